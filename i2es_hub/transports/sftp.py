"""SFTP transport (paramiko), with pinned host keys and pipelined transfers.

The server's host key must match the ``host_key`` extra field of the connector's
Airflow connection (``ssh-ed25519 AAAA...``, as printed by ``ssh-keyscan``); an
unknown or changed key is refused with a message saying how to pin it. There is
no "accept on first use".

Speed: a session opens ``workers`` SFTP channels over one SSH connection and
spreads the per-file requests (open, read, close, rename) over them, so many
round trips are in flight at once; files larger than one SFTP read request are
also read ahead with paramiko's prefetch. Writes are pipelined and their
statuses collected when the file is closed. ``bench/sftp_bench.py`` compares
this against OpenSSH's ``sftp`` client.

Limitations: readiness compares the server's modification times with the
hub's clock, so a large clock skew between them shifts ``min_age``. Listing a
folder reads it whole (incrementally, without holding it twice in memory).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import posixpath
import queue
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from io import StringIO
from typing import Any, TypeVar

import paramiko

from i2es_hub.connections import ConnectionInfo, get_connection
from i2es_hub.errors import (
    ConfigError,
    PermanentTransportError,
    TransientTransportError,
    TransportError,
)
from i2es_hub.transports.base import (
    ConfigReader,
    Fetched,
    InboxRules,
    OutboundMessage,
    Peer,
    PushResult,
    RemoteFile,
    StabilityFilter,
    name_problem,
    peer_from,
)

logger = logging.getLogger(__name__)

_R = TypeVar("_R")

#: Files larger than this are read with paramiko's prefetch (pipelined reads).
_PREFETCH_ABOVE = 32 * 1024
#: Files handed to the worker channels at a time; bounds memory and lets a
#: failure stop the batch early.
_WAVE = 256


@dataclass(frozen=True)
class SftpConfig:
    """Settings of one SFTP connector.

    Attributes:
        peer: Connector name and country.
        conn_id: Airflow connection holding host, login, key and pinned host key.
        rules: Inbox, outbox, archive and readiness rules.
        connect_timeout: Seconds allowed for TCP connect, banner and login.
        timeout: Seconds without an answer before a request is given up.
        workers: SFTP channels used in parallel over the one SSH connection.
    """

    peer: Peer
    conn_id: str
    rules: InboxRules
    connect_timeout: float = 15.0
    timeout: float = 60.0
    workers: int = 4

    KEYS = InboxRules.KEYS | {"conn_id", "connect_timeout", "timeout", "workers"}

    @classmethod
    def from_mapping(
        cls, name: str, country: str, data: Mapping[str, Any]
    ) -> SftpConfig:
        """Build the settings from a connector file's ``transport`` mapping.

        Raises:
            ConfigError: A key is unknown, missing or invalid; the message names it.
        """
        reader = ConfigReader(name, data, set(cls.KEYS))
        return cls(
            peer=peer_from(name, country),
            conn_id=reader.text("conn_id"),
            rules=InboxRules.read(reader),
            connect_timeout=reader.number("connect_timeout", 15.0, minimum=0.1),
            timeout=reader.number("timeout", 60.0, minimum=0.1),
            workers=reader.integer("workers", 4, minimum=1),
        )


class _HostKeyRefused(paramiko.SSHException):
    """Raised inside paramiko's handshake when the server's key is not pinned."""

    def __init__(self, offered: paramiko.PKey) -> None:
        super().__init__("host key not pinned")
        self.offered = offered


class _RefuseUnpinned(paramiko.MissingHostKeyPolicy):
    """Refuses any key other than the pinned one (never adds a key)."""

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        raise _HostKeyRefused(key)


def parse_host_key(line: str, where: str) -> paramiko.PKey:
    """Parse a pinned public key line such as ``ssh-ed25519 AAAA... comment``.

    A leading host name (as ``ssh-keyscan`` prints) is accepted and ignored.

    Raises:
        ConfigError: The line is not a public key.
    """
    fields = line.split()
    if fields and not fields[0].startswith(("ssh-", "ecdsa-", "sk-")):
        fields = fields[1:]  # "host ssh-ed25519 AAAA..." from ssh-keyscan
    if len(fields) < 2:
        raise ConfigError(
            f"{where}: extra field 'host_key' must look like 'ssh-ed25519 AAAA...'"
        )
    try:
        return paramiko.PKey.from_type_string(fields[0], base64.b64decode(fields[1]))
    except (binascii.Error, paramiko.SSHException, ValueError) as exc:
        raise ConfigError(
            f"{where}: extra field 'host_key' is not a valid {fields[0]} public key "
            f"({type(exc).__name__})"
        ) from None


def _load_private_key(text: str, passphrase: str | None, where: str) -> paramiko.PKey:
    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return kind.from_private_key(StringIO(text), password=passphrase)
        except paramiko.PasswordRequiredException:
            raise ConfigError(
                f"{where}: the private key is encrypted; set the extra field "
                "'private_key_passphrase'"
            ) from None
        except (paramiko.SSHException, ValueError):
            continue
    raise ConfigError(
        f"{where}: extra field 'private_key' is not an Ed25519, ECDSA or RSA private "
        "key in OpenSSH or PEM form (or its passphrase is wrong)"
    )


class SftpTransport:
    """An open SFTP session with one peer. Obtain it with `open_sftp`."""

    def __init__(
        self,
        config: SftpConfig,
        connection: ConnectionInfo,
        client: paramiko.SSHClient,
        channels: list[paramiko.SFTPClient],
        pool: ThreadPoolExecutor,
    ) -> None:
        self.config = config
        self._conn = connection
        self._client = client
        self._main = channels[0]
        self._idle: queue.SimpleQueue[paramiko.SFTPClient] = queue.SimpleQueue()
        for channel in channels:
            self._idle.put(channel)
        self._pool = pool
        self._filter = StabilityFilter(config.rules.pattern, config.rules.min_age)
        self._where = f"{connection.host}:{connection.port or 22}"

    # --- helpers ------------------------------------------------------------

    def _path(self, folder: str, name: str) -> str:
        return posixpath.join(folder, name)

    def _connected(self) -> bool:
        transport = self._client.get_transport()
        return transport is not None and transport.is_active()

    def _lost(self, action: str, path: str, exc: BaseException) -> TransportError:
        """Build the error for a failure that is not about one file."""
        return TransientTransportError(
            f"SFTP {self.config.peer}: {action} {path} on {self._where} failed: "
            f"connection lost or timed out ({type(exc).__name__}). The hub will "
            "retry; if this persists, check that the server is up and reachable."
        )

    def _on_channels(
        self, items: Sequence[Any], work: Callable[[paramiko.SFTPClient, Any], _R]
    ) -> list[_R]:
        """Run ``work(channel, item)`` for every item over the idle channels."""

        def run(item: Any) -> _R:
            channel = self._idle.get()
            try:
                return work(channel, item)
            finally:
                self._idle.put(channel)

        return list(self._pool.map(run, items))

    # --- pull -----------------------------------------------------------------

    def list_ready(self, limit: int | None = None) -> list[RemoteFile]:
        """Return the ready inbox files, oldest first (see `transports.base`).

        Raises:
            PermanentTransportError: The inbox folder does not exist or may not
                be read.
            TransientTransportError: The connection failed.
        """
        inbox = self.config.rules.inbox
        try:
            entries = [
                RemoteFile(attr.filename, attr.st_size or 0, attr.st_mtime or 0, "")
                for attr in self._main.listdir_iter(inbox, read_aheads=64)
                if attr.st_mode is not None and stat.S_ISREG(attr.st_mode)
            ]
        except (FileNotFoundError, PermissionError) as exc:
            raise PermanentTransportError(
                f"SFTP {self.config.peer}: cannot list inbox folder {inbox!r} on "
                f"{self._where} ({exc.strerror or exc}). Check 'inbox' in the "
                "connector file and the account's rights on the server."
            ) from exc
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._lost("listing", inbox, exc) from exc

        ready = self._filter.ready(entries, time.time())
        if limit is not None:
            ready = ready[:limit]
        logger.info(
            "SFTP %s: %d of %d files in %s ready",
            self.config.peer,
            len(ready),
            len(entries),
            inbox,
        )
        return ready

    def fetch(self, files: Iterable[RemoteFile]) -> Iterator[Fetched]:
        """Yield the bytes of each file, in order, one `Fetched` per file.

        Hostile names, files over ``max_file_size`` and unreadable files come
        back as a `Fetched` with an error; the others are unaffected.

        Raises:
            TransientTransportError: The connection was lost; files already
                yielded are good, the rest will be fetched next time.
        """
        batch = list(files)
        started = time.monotonic()
        taken = refused = size = 0
        for start in range(0, len(batch), _WAVE):
            for result in self._on_channels(batch[start : start + _WAVE], self._read):
                if result.ok:
                    taken += 1
                    size += len(result.data)
                else:
                    refused += 1
                yield result
        logger.info(
            "SFTP %s: fetched %d files (%d bytes), %d refused, from %s in %.2fs",
            self.config.peer,
            taken,
            size,
            refused,
            self.config.rules.inbox,
            time.monotonic() - started,
        )

    def _read(self, channel: paramiko.SFTPClient, file: RemoteFile) -> Fetched:
        rules = self.config.rules
        problem = name_problem(file.name)
        if problem is not None:
            return Fetched(file, error=self._refused_name(file.name, problem))
        path = self._path(rules.inbox, file.name)
        if file.size > rules.max_file_size:
            return Fetched(file, error=self._too_big(path, file.size))

        try:
            with channel.open(path, "rb") as remote:
                if file.size > _PREFETCH_ABOVE:
                    remote.prefetch(file.size, max_concurrent_requests=64)
                # Read to the end (bounded), so a file that grew is noticed.
                data = remote.read(rules.max_file_size + 1)
        except (FileNotFoundError, PermissionError) as exc:
            if not self._connected():
                raise self._lost("reading", path, exc) from exc
            return Fetched(file, error=self._unreadable(path, exc))
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._lost("reading", path, exc) from exc

        if len(data) > rules.max_file_size:
            return Fetched(file, error=self._too_big(path, len(data)))
        if len(data) != file.size:
            return Fetched(
                file,
                error=TransientTransportError(
                    f"SFTP {self.config.peer}: {path} on {self._where} changed size "
                    f"since it was listed ({file.size} -> {len(data)} bytes); it "
                    "is still being written and will be taken on a later run."
                ),
            )
        return Fetched(file, data)

    def _unreadable(self, path: str, exc: OSError) -> TransportError:
        if isinstance(exc, FileNotFoundError):
            return TransientTransportError(
                f"SFTP {self.config.peer}: {path} on {self._where} vanished after "
                "it was listed; another process may have taken it. Nothing to do "
                "unless it keeps happening."
            )
        return PermanentTransportError(
            f"SFTP {self.config.peer}: may not read {path} on {self._where}; it was "
            "left in place. Ask the country to fix the file's permissions."
        )

    def _refused_name(self, name: str, problem: str) -> PermanentTransportError:
        return PermanentTransportError(
            f"SFTP {self.config.peer}: refused inbox entry {name!r} in "
            f"{self.config.rules.inbox} on {self._where}: {problem}. It was left in "
            "place; ask the country to rename or remove it."
        )

    def _too_big(self, path: str, size: int) -> PermanentTransportError:
        cap = self.config.rules.max_file_size
        return PermanentTransportError(
            f"SFTP {self.config.peer}: {path} on {self._where} is {size} bytes, over "
            f"the {cap}-byte limit; it was left in place. Raise 'max_file_size' in "
            "the connector file or ask the country to split it."
        )

    def archive(self, files: Iterable[RemoteFile]) -> int:
        """Move committed files to the archive folder, or delete them.

        Call only after the documents are committed. Files already gone (a
        repeat after a crash) are skipped.

        Returns:
            How many files were moved or deleted.

        Raises:
            PermanentTransportError: The archive folder is missing or read-only.
            TransientTransportError: The connection failed.
        """
        batch = [file for file in files if name_problem(file.name) is None]
        done = sum(self._on_channels(batch, self._archive_one))
        logger.info(
            "SFTP %s: %s %d of %d files from %s",
            self.config.peer,
            "deleted" if self.config.rules.after_pull == "delete" else "archived",
            done,
            len(batch),
            self.config.rules.inbox,
        )
        return done

    def _archive_one(self, channel: paramiko.SFTPClient, file: RemoteFile) -> int:
        rules = self.config.rules
        source = self._path(rules.inbox, file.name)
        try:
            if rules.after_pull == "delete" or rules.archive_dir is None:
                channel.remove(source)
                return 1
            target = self._path(rules.archive_dir, file.name)
            try:
                channel.rename(source, target)
            except OSError:
                # Plain rename will not replace; a name seen before gets a stamp.
                channel.stat(source)  # FileNotFoundError: already archived
                stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
                channel.rename(source, f"{target}.{stamp}.{time.monotonic_ns()}")
            return 1
        except FileNotFoundError:
            if not self._connected():
                raise self._lost("archiving", source, ConnectionError()) from None
            return 0
        except PermissionError as exc:
            raise PermanentTransportError(
                f"SFTP {self.config.peer}: may not move {source} to "
                f"{rules.archive_dir} on {self._where} ({exc.strerror or exc}). Check "
                "'archive_dir' in the connector file and the account's rights."
            ) from exc
        except (OSError, EOFError, paramiko.SSHException) as exc:
            if self._connected():
                raise PermanentTransportError(
                    f"SFTP {self.config.peer}: could not move {source} to "
                    f"{rules.archive_dir} on {self._where} ({exc}). Check that the "
                    "archive folder exists and is writable."
                ) from exc
            raise self._lost("archiving", source, exc) from exc

    # --- push -----------------------------------------------------------------

    def push(self, messages: Sequence[OutboundMessage]) -> list[PushResult]:
        """Write each message under ``.tmp-<id>``, then rename it into the outbox.

        The final name carries the message id, so pushing a message twice
        leaves one file. Sizes are checked against a listing afterwards.

        Raises:
            TransientTransportError: The connection failed; nothing is lost,
                the outbox pushes the batch again.
        """
        started = time.monotonic()
        results = self._on_channels(messages, self._write)
        results = self._verify(messages, results)
        failed = sum(1 for result in results if not result.ok)
        logger.info(
            "SFTP %s: pushed %d messages (%d bytes), %d failed, to %s in %.2fs",
            self.config.peer,
            len(messages) - failed,
            sum(len(m.data) for m in messages),
            failed,
            self.config.rules.outbox,
            time.monotonic() - started,
        )
        return results

    def _write(
        self, channel: paramiko.SFTPClient, message: OutboundMessage
    ) -> PushResult:
        outbox = self.config.rules.outbox
        temporary = self._path(outbox, message.temporary_name)
        final = self._path(outbox, message.remote_name)
        try:
            with channel.open(temporary, "wb") as remote:
                remote.set_pipelined(True)
                remote.write(message.data)
            # Statuses of the pipelined writes were collected by close().
            channel.posix_rename(temporary, final)
        except (PermissionError, FileNotFoundError) as exc:
            if not self._connected():
                raise self._lost("writing", final, exc) from exc
            return PushResult(
                message.message_id,
                final,
                PermanentTransportError(
                    f"SFTP {self.config.peer}: cannot write {final} on {self._where} "
                    f"({exc.strerror or exc}). Check 'outbox' in the connector file "
                    "and the account's rights on the server."
                ),
            )
        except (OSError, EOFError, paramiko.SSHException) as exc:
            if self._connected() and isinstance(exc, OSError):
                return PushResult(
                    message.message_id,
                    final,
                    TransientTransportError(
                        f"SFTP {self.config.peer}: writing {final} on {self._where} "
                        f"failed ({exc}); it will be pushed again."
                    ),
                )
            raise self._lost("writing", final, exc) from exc
        return PushResult(message.message_id, final)

    def _verify(
        self, messages: Sequence[OutboundMessage], results: list[PushResult]
    ) -> list[PushResult]:
        """Check pushed sizes with one listing; a file already taken passes."""
        outbox = self.config.rules.outbox
        try:
            sizes = {
                attr.filename: attr.st_size
                for attr in self._main.listdir_iter(outbox, read_aheads=64)
            }
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._lost("listing", outbox, exc) from exc

        checked = []
        for message, result in zip(messages, results, strict=True):
            size = sizes.get(message.remote_name)
            if result.ok and size is not None and size != len(message.data):
                result = PushResult(
                    message.message_id,
                    result.remote,
                    TransientTransportError(
                        f"SFTP {self.config.peer}: {result.remote} on {self._where} "
                        f"has {size} bytes, not {len(message.data)}; it will be "
                        "pushed again."
                    ),
                )
            checked.append(result)
        return checked


@contextlib.contextmanager
def open_sftp(
    config: SftpConfig, connection: ConnectionInfo | None = None
) -> Iterator[SftpTransport]:
    """Connect to the peer's SFTP server and yield a session.

    Args:
        config: The connector's SFTP settings.
        connection: The credentials; read from ``config.conn_id`` when None.

    Yields:
        The open session; the connection is closed when the context ends.

    Raises:
        ConfigError: The connection lacks a valid ``host_key`` or private key.
        PermanentTransportError: The host key is not the pinned one, or login
            was refused.
        TransientTransportError: The server could not be reached.
    """
    conn = connection if connection is not None else get_connection(config.conn_id)
    where = f"Airflow connection {conn.conn_id!r} (connector {config.peer})"
    if not conn.host:
        raise ConfigError(f"{where}: no host is set")
    pinned_line = conn.extra.get("host_key")
    if not pinned_line:
        raise ConfigError(
            f"{where}: extra field 'host_key' is required: pin the server's key, "
            f"e.g. the output of 'ssh-keyscan -p {conn.port or 22} -t ed25519 "
            f"{conn.host}' without the host name"
        )
    pinned = parse_host_key(str(pinned_line), where)
    private_text = conn.extra.get("private_key")
    pkey = None
    if private_text:
        passphrase = conn.extra.get("private_key_passphrase")
        pkey = _load_private_key(str(private_text), passphrase, where)
    if pkey is None and conn.password is None:
        raise ConfigError(f"{where}: set a password or the extra field 'private_key'")

    client = _connect(config, conn, pinned, pkey)
    channels: list[paramiko.SFTPClient] = []
    try:
        transport = client.get_transport()
        if transport is None:  # connect() succeeded, so this cannot happen
            raise TransientTransportError(f"SFTP {config.peer}: no SSH transport")
        try:
            for _ in range(config.workers):
                channel = paramiko.SFTPClient.from_transport(transport)
                if channel is None:
                    raise paramiko.SSHException("the server refused an SFTP channel")
                channels.append(channel)
                ssh_channel = channel.get_channel()
                if ssh_channel is not None:
                    ssh_channel.settimeout(config.timeout)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise TransientTransportError(
                f"SFTP {config.peer}: could not open SFTP channels on "
                f"{conn.host}:{conn.port or 22} ({exc}); the hub will retry. If it "
                "persists, check that the server offers the SFTP subsystem."
            ) from exc
        with ThreadPoolExecutor(
            max_workers=config.workers, thread_name_prefix=f"sftp-{config.peer.name}"
        ) as pool:
            yield SftpTransport(config, conn, client, channels, pool)
    finally:
        for channel in channels:
            with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                channel.close()
        client.close()


def _connect(
    config: SftpConfig,
    conn: ConnectionInfo,
    pinned: paramiko.PKey,
    pkey: paramiko.PKey | None,
) -> paramiko.SSHClient:
    port = conn.port or 22
    place = f"{conn.host}:{port}"
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(_RefuseUnpinned())
    known_as = conn.host if port == 22 else f"[{conn.host}]:{port}"
    client.get_host_keys().add(known_as, pinned.get_name(), pinned)

    try:
        client.connect(
            conn.host,
            port=port,
            username=conn.login,
            password=conn.password,
            pkey=pkey,
            timeout=config.connect_timeout,
            banner_timeout=config.connect_timeout,
            auth_timeout=config.connect_timeout,
            channel_timeout=config.connect_timeout,
            look_for_keys=False,
            allow_agent=False,
        )
    except _HostKeyRefused as exc:
        client.close()
        raise _host_key_error(config, conn, pinned, exc.offered) from exc
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise _host_key_error(config, conn, pinned, exc.key) from exc
    except paramiko.AuthenticationException as exc:
        client.close()
        raise PermanentTransportError(
            f"SFTP {config.peer}: login as {conn.login!r} on {place} was refused. "
            f"Check the login and the key or password in Airflow connection "
            f"{conn.conn_id!r}."
        ) from exc
    except (OSError, EOFError, paramiko.SSHException) as exc:
        client.close()
        raise TransientTransportError(
            f"SFTP {config.peer}: could not connect to {place} "
            f"({type(exc).__name__}: {exc}). The hub will retry; if this persists, "
            "check the host and port in Airflow connection "
            f"{conn.conn_id!r} and that the server is up."
        ) from exc
    logger.debug("SFTP %s: connected to %s", config.peer, place)
    return client


def _host_key_error(
    config: SftpConfig,
    conn: ConnectionInfo,
    pinned: paramiko.PKey,
    offered: paramiko.PKey,
) -> PermanentTransportError:
    port = conn.port or 22
    key_type = offered.get_name()
    scan_type = key_type.removeprefix("ssh-").replace("ecdsa-sha2-nistp256", "ecdsa")
    return PermanentTransportError(
        f"SFTP {config.peer}: refused the host key of {conn.host}:{port}: it offered "
        f"{key_type} {offered.fingerprint}, but Airflow connection "
        f"{conn.conn_id!r} pins {pinned.get_name()} {pinned.fingerprint}. This may "
        "be an attack or a re-installed server: confirm the new fingerprint with "
        "the country's administrators. Then pin it by setting the connection's "
        f"extra field 'host_key' to the output of 'ssh-keyscan -p {port} -t "
        f"{scan_type} {conn.host}' without the host name, that is: "
        f"'{key_type} {offered.get_base64()}'."
    )


__all__ = ["SftpConfig", "SftpTransport", "open_sftp", "parse_host_key"]
