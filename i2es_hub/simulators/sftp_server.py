"""A real SFTP server on loopback, for tests, the demo and benchmarks.

Two implementations behind one context manager, `sftp_server`:

* ``openssh``: OpenSSH's ``/usr/sbin/sshd`` with a throw-away configuration
  (its own host key from ``ssh-keygen``, ``internal-sftp`` starting in the served
  folder, key authentication for the current user). Used when sshd is installed.
* ``inprocess``: a paramiko SFTP server running in a thread of this process,
  serving a local folder, with key and password authentication.

Both listen on 127.0.0.1 only, on a free port, and both stop everything they
started when the context ends. Paths are relative to the served folder: the
client's ``inbox/a.xml`` is ``<root>/inbox/a.xml`` on disk.

Example::

    with sftp_server() as server:
        os.environ["AIRFLOW_CONN_FR_SFTP"] = server.connection_uri()
        ...
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any
from urllib.parse import quote

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from paramiko.common import (
    AUTH_FAILED,
    AUTH_SUCCESSFUL,
    OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED,
    OPEN_SUCCEEDED,
)
from paramiko.sftp import SFTP_OK

logger = logging.getLogger(__name__)

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = "/run/sshd"


def sshd_available() -> bool:
    """True when OpenSSH's sshd and ssh-keygen are installed."""
    return os.access(SSHD, os.X_OK) and shutil.which("ssh-keygen") is not None


def new_ed25519_key() -> tuple[str, str]:
    """Make a fresh Ed25519 key pair.

    Returns:
        The private key (OpenSSH PEM text) and the public key line
        (``ssh-ed25519 AAAA...``).
    """
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode("ascii")
    public = (
        key.public_key()
        .public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        .decode("ascii")
    )
    return private, public


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SftpServer:
    """A running SFTP server and how to reach it.

    Attributes:
        kind: ``openssh`` or ``inprocess``.
        host: Always ``127.0.0.1``.
        port: The TCP port.
        username: The login to use.
        host_key: The server's public host key line, to pin.
        client_private_key: An OpenSSH private key the server accepts.
        password: A password the server accepts, or None (sshd: keys only).
        root: The folder served; client paths are relative to it.
    """

    kind: str
    host: str
    port: int
    username: str
    host_key: str
    client_private_key: str = field(repr=False)
    password: str | None = field(repr=False)
    root: Path
    _drop: Any = field(repr=False, default=None)

    def connection_uri(self, *, use_password: bool = False) -> str:
        """Return an ``AIRFLOW_CONN_...`` value (URI form) for this server.

        Args:
            use_password: Authenticate with the password instead of the key.
        """
        login = quote(self.username, safe="")
        query = f"host_key={quote(self.host_key, safe='')}"
        if use_password:
            if self.password is None:
                raise ValueError(f"the {self.kind} server takes keys only")
            login += ":" + quote(self.password, safe="")
        else:
            query += f"&private_key={quote(self.client_private_key, safe='')}"
        return f"sftp://{login}@{self.host}:{self.port}?{query}"

    def drop_connections(self) -> int:
        """Cut every open client connection, as a network failure would.

        Returns:
            How many connections were cut.
        """
        dropped: int = self._drop()
        return dropped


@contextlib.contextmanager
def sftp_server(
    kind: str = "auto", root: Path | None = None, *, timeout: float = 10.0
) -> Iterator[SftpServer]:
    """Run an SFTP server on 127.0.0.1 for the duration of the context.

    Args:
        kind: ``openssh``, ``inprocess``, or ``auto`` (openssh when installed).
        root: Folder to serve; a temporary one (removed afterwards) when None.
        timeout: Seconds to wait for the server to accept connections.

    Yields:
        The running server.

    Raises:
        RuntimeError: ``openssh`` was asked for but sshd is missing, or the
            server did not start (its log is included).
    """
    if kind == "auto":
        kind = "openssh" if sshd_available() else "inprocess"
    if kind not in ("openssh", "inprocess"):
        raise ValueError(f"unknown SFTP server kind {kind!r}")

    with tempfile.TemporaryDirectory(prefix="i2es-sftp-") as scratch:
        served = root if root is not None else Path(scratch) / "root"
        served.mkdir(parents=True, exist_ok=True)
        if kind == "openssh":
            with _openssh(Path(scratch), served.resolve(), timeout) as server:
                yield server
        else:
            with _inprocess(served.resolve()) as server:
                yield server


# --- OpenSSH ------------------------------------------------------------------


@contextlib.contextmanager
def _openssh(scratch: Path, root: Path, timeout: float) -> Iterator[SftpServer]:
    if not sshd_available():
        raise RuntimeError(f"{SSHD} is not installed: install openssh-server")

    host_key_file = scratch / "ssh_host_ed25519_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key_file)],
        check=True,
        capture_output=True,
    )
    host_key = host_key_file.with_suffix(".pub").read_text().split()
    client_private, client_public = new_ed25519_key()
    (scratch / "authorized_keys").write_text(client_public + "\n")

    # sshd running as root insists on its privilege-separation folder, which
    # only the system service normally creates.
    if os.geteuid() == 0 and not os.path.isdir(PRIVSEP_DIR):
        os.makedirs(PRIVSEP_DIR, mode=0o755, exist_ok=True)
        logger.info("created %s, which sshd needs when run as root", PRIVSEP_DIR)

    port = free_port()
    config = scratch / "sshd_config"
    config.write_text(
        "\n".join(
            [
                "ListenAddress 127.0.0.1",
                f"Port {port}",
                f"HostKey {host_key_file}",
                f"PidFile {scratch / 'sshd.pid'}",
                f"AuthorizedKeysFile {scratch / 'authorized_keys'}",
                "StrictModes no",
                "UsePAM no",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "AllowTcpForwarding no",
                "X11Forwarding no",
                "MaxStartups 50",
                "MaxSessions 50",
                "LogLevel ERROR",
                f'Subsystem sftp internal-sftp -d "{root}"',
                "",
            ]
        )
    )
    log_path = scratch / "sshd.log"
    with open(log_path, "wb") as log:
        # -D: stay in the foreground so we own the process; -e: log to stderr.
        process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        _wait_for_port(port, timeout, process, log_path)
        logger.info("sshd started on 127.0.0.1:%d (pid %d)", port, process.pid)
        yield SftpServer(
            kind="openssh",
            host="127.0.0.1",
            port=port,
            username=getpass.getuser(),
            host_key=f"{host_key[0]} {host_key[1]}",
            client_private_key=client_private,
            password=None,
            root=root,
            _drop=lambda: _kill_children(process.pid),
        )
    finally:
        _kill_children(process.pid)
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        logger.info("sshd on 127.0.0.1:%d stopped", port)


def _wait_for_port(
    port: int, timeout: float, process: subprocess.Popen[bytes], log_path: Path
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"sshd exited with status {process.returncode}: "
                f"{log_path.read_text(errors='replace').strip()}"
            )
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"sshd did not listen on 127.0.0.1:{port} within {timeout}s")


def _kill_children(parent: int) -> int:
    """SIGKILL the per-connection processes sshd forked; return how many."""
    killed = 0
    for child in _children(parent):
        # Grandchildren first: the privilege-separated session process.
        killed += _kill_children(child)
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
            killed += 1
    return killed


def _children(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces; ppid follows.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent:
            found.append(int(entry))
    return found


# --- in-process paramiko server -------------------------------------------------


def _status(exc: OSError) -> int:
    """Translate an OS error into an SFTP status code."""
    return int(paramiko.SFTPServer.convert_errno(exc.errno or errno.EIO))


class _Auth(paramiko.ServerInterface):
    """Accepts one user, by password or by one public key; sessions only."""

    def __init__(self, username: str, password: str, key: paramiko.PKey) -> None:
        self._username = username
        self._password = password
        self._key = key

    def get_allowed_auths(self, username: str) -> str:
        return "publickey,password"

    def check_auth_password(self, username: str, password: str) -> int:
        if username == self._username and password == self._password:
            return AUTH_SUCCESSFUL
        return AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if username == self._username and key == self._key:
            return AUTH_SUCCESSFUL
        return AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return OPEN_SUCCEEDED
        return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


class _Handle(paramiko.SFTPHandle):
    """An open file of the served folder."""

    def __init__(self, fd: int, flags: int) -> None:
        super().__init__(flags)
        mode = "rb" if flags & (os.O_WRONLY | os.O_RDWR) == 0 else "r+b"
        self.readfile = self.writefile = os.fdopen(fd, mode)

    def stat(self) -> paramiko.SFTPAttributes | int:
        try:
            return paramiko.SFTPAttributes.from_stat(os.fstat(self.readfile.fileno()))
        except OSError as exc:
            return _status(exc)


class _Folder(paramiko.SFTPServerInterface):
    """Serves one local folder as the SFTP root; nothing outside it."""

    def __init__(self, server: paramiko.ServerInterface, *, root: Path) -> None:
        super().__init__(server)
        self._root = root

    def _local(self, path: str) -> str:
        virtual = self.canonicalize(path)  # normalised, starts with "/"
        return os.path.join(self._root, virtual.lstrip("/"))

    def open(
        self, path: str, flags: int, attr: paramiko.SFTPAttributes
    ) -> paramiko.SFTPHandle | int:
        try:
            fd = os.open(self._local(path), flags | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            return _status(exc)
        return _Handle(fd, flags)

    def list_folder(self, path: str) -> list[paramiko.SFTPAttributes] | int:
        local = self._local(path)
        try:
            entries = []
            with os.scandir(local) as listing:
                for entry in listing:
                    attrs = paramiko.SFTPAttributes.from_stat(
                        entry.stat(follow_symlinks=False), entry.name
                    )
                    entries.append(attrs)
            return entries
        except OSError as exc:
            return _status(exc)

    def stat(self, path: str) -> paramiko.SFTPAttributes | int:
        return self.lstat(path)

    def lstat(self, path: str) -> paramiko.SFTPAttributes | int:
        try:
            return paramiko.SFTPAttributes.from_stat(os.lstat(self._local(path)))
        except OSError as exc:
            return _status(exc)

    def remove(self, path: str) -> int:
        return self._call(os.remove, self._local(path))

    def rename(self, oldpath: str, newpath: str) -> int:
        # Plain SFTP rename refuses to replace an existing file, like OpenSSH.
        target = self._local(newpath)
        if os.path.lexists(target):
            return paramiko.SFTPServer.convert_errno(errno.EEXIST)
        return self._call(os.rename, self._local(oldpath), target)

    def posix_rename(self, oldpath: str, newpath: str) -> int:
        return self._call(os.rename, self._local(oldpath), self._local(newpath))

    def mkdir(self, path: str, attr: paramiko.SFTPAttributes) -> int:
        return self._call(os.mkdir, self._local(path))

    def rmdir(self, path: str) -> int:
        return self._call(os.rmdir, self._local(path))

    def chattr(self, path: str, attr: paramiko.SFTPAttributes) -> int:
        return SFTP_OK

    @staticmethod
    def _call(function: Any, *args: str) -> int:
        try:
            function(*args)
        except OSError as exc:
            return _status(exc)
        return SFTP_OK


@contextlib.contextmanager
def _inprocess(root: Path) -> Iterator[SftpServer]:
    host_private, host_public = new_ed25519_key()
    host_key = paramiko.Ed25519Key.from_private_key(StringIO(host_private))
    client_private, _ = new_ed25519_key()
    client_key = paramiko.Ed25519Key.from_private_key(StringIO(client_private))
    username = "hub"
    password = os.urandom(12).hex()

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)  # so the accept loop notices it must stop
    port = int(listener.getsockname()[1])

    transports: list[paramiko.Transport] = []
    lock = threading.Lock()
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed: we are stopping
            transport = paramiko.Transport(sock)
            transport.add_server_key(host_key)
            transport.set_subsystem_handler(
                "sftp", paramiko.SFTPServer, _Folder, root=root
            )
            with lock:
                transports.append(transport)
            try:
                transport.start_server(server=_Auth(username, password, client_key))
            except (paramiko.SSHException, EOFError, OSError) as exc:
                logger.debug("in-process SFTP handshake failed: %s", exc)
                transport.close()

    def drop() -> int:
        with lock:
            live = [t for t in transports if t.is_active()]
            transports.clear()
        for transport in live:
            # Shut the socket first so the client sees a dead peer at once.
            with contextlib.suppress(OSError):
                transport.sock.shutdown(socket.SHUT_RDWR)
            transport.close()
        return len(live)

    thread = threading.Thread(target=serve, name=f"sftp-server-{port}", daemon=True)
    thread.start()
    logger.info("in-process SFTP server started on 127.0.0.1:%d", port)
    try:
        yield SftpServer(
            kind="inprocess",
            host="127.0.0.1",
            port=port,
            username=username,
            host_key=f"{host_key.get_name()} {host_key.get_base64()}",
            client_private_key=client_private,
            password=password,
            root=root,
            _drop=drop,
        )
    finally:
        stopping.set()
        listener.close()
        thread.join(timeout=5)
        drop()
        logger.info("in-process SFTP server on 127.0.0.1:%d stopped", port)


__all__ = [
    "SftpServer",
    "free_port",
    "new_ed25519_key",
    "sftp_server",
    "sshd_available",
]
