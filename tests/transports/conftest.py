"""Fixtures: a real peer behind each transport, driven from the test.

Each ``Peer`` hides how a national system's side is seen (files on disk behind
sshd or the in-process SFTP server, a local drop folder, the simulated REST
system) so one conformance suite can run against every transport.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from i2es_hub.connections import ConnectionInfo, parse_connection
from i2es_hub.simulators.rest_server import NationalRestSystem, rest_server
from i2es_hub.simulators.sftp_server import SftpServer, sftp_server, sshd_available
from i2es_hub.transports import (
    FileDropConfig,
    RestConfig,
    SftpConfig,
    TransportConfig,
)

OLD = 3600.0  # seconds: files dropped this long ago are past min_age


@dataclass
class Peer:
    """The national system's side of one transport, for tests."""

    kind: str
    root: Path | None = None
    sftp: SftpServer | None = None
    rest: NationalRestSystem | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def folders(self) -> bool:
        return self.kind != "rest"

    def config(self, **overrides: Any) -> TransportConfig:
        data = {**self.settings, **overrides}
        if self.kind == "rest":
            return RestConfig.from_mapping("fr-national", "FR", data)
        if self.kind == "filedrop":
            return FileDropConfig.from_mapping("fr-drop", "FR", data)
        return SftpConfig.from_mapping("fr-sftp", "FR", data)

    def connection(self, **extra: str) -> ConnectionInfo | None:
        if self.sftp is None:
            return None
        info = parse_connection("fr_sftp", self.sftp.connection_uri())
        if extra:
            info = ConnectionInfo(
                info.conn_id,
                info.conn_type,
                info.host,
                info.port,
                info.login,
                info.password,
                {**info.extra, **extra},
            )
        return info

    def drop(self, name: str, data: bytes, *, age: float = OLD) -> None:
        """Put a document in the hub's inbox at the peer."""
        if self.rest is not None:
            self.rest.add_outgoing(name, data)
            return
        assert self.root is not None
        path = self.root / "inbox" / name
        path.write_bytes(data)
        when = time.time() - age
        os.utime(path, (when, when))

    def inbox(self) -> set[str]:
        if self.rest is not None:
            return {entry[0] for entry in self.rest.outgoing.values()}
        assert self.root is not None
        return set(os.listdir(self.root / "inbox"))

    def archived(self) -> set[str]:
        assert self.root is not None
        return set(os.listdir(self.root / "archive"))

    def delivered(self) -> dict[str, bytes]:
        """What the hub pushed, by name, as the receiver sees it."""
        if self.rest is not None:
            return {p.filename: p.body for p in self.rest.pushed}
        assert self.root is not None
        outbox = self.root / "outbox"
        return {name: (outbox / name).read_bytes() for name in os.listdir(outbox)}


def _folders(root: Path) -> dict[str, Any]:
    for name in ("inbox", "outbox", "archive"):
        (root / name).mkdir(parents=True, exist_ok=True)
    return {"pattern": "*.xml", "min_age": 5, "archive_dir": "archive"}


@pytest.fixture(scope="session")
def openssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SftpServer]:
    if not sshd_available():
        pytest.skip("/usr/sbin/sshd is not installed: OpenSSH variant not run")
    with sftp_server("openssh", tmp_path_factory.mktemp("openssh")) as server:
        yield server


@pytest.fixture(scope="session")
def inprocess_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SftpServer]:
    with sftp_server("inprocess", tmp_path_factory.mktemp("inprocess")) as server:
        yield server


def _sftp_peer(server: SftpServer, kind: str) -> Peer:
    # Each test gets fresh folders on the shared server.
    base = f"t{time.monotonic_ns()}"
    root = server.root / base
    settings = _folders(root)
    settings.update(
        conn_id="fr_sftp",
        inbox=f"{base}/inbox",
        outbox=f"{base}/outbox",
        archive_dir=f"{base}/archive",
        timeout=10,
        connect_timeout=5,
    )
    return Peer(kind, root=root, sftp=server, settings=settings)


@pytest.fixture(params=["sftp-openssh", "sftp-inprocess", "filedrop", "rest"])
def peer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Peer]:
    kind = request.param
    if kind == "sftp-openssh":
        yield _sftp_peer(request.getfixturevalue("openssh_server"), kind)
    elif kind == "sftp-inprocess":
        yield _sftp_peer(request.getfixturevalue("inprocess_server"), kind)
    elif kind == "filedrop":
        settings = _folders(tmp_path)
        settings.update(
            inbox=str(tmp_path / "inbox"),
            outbox=str(tmp_path / "outbox"),
            archive_dir=str(tmp_path / "archive"),
        )
        yield Peer(kind, root=tmp_path, settings=settings)
    else:
        with rest_server() as system:
            settings = {"base_url": system.base_url, "backoff": 0.01, "max_backoff": 2}
            yield Peer(kind, rest=system, settings=settings)


@pytest.fixture(params=["sftp-openssh", "sftp-inprocess"])
def sftp_peer(request: pytest.FixtureRequest) -> Peer:
    server_fixture = {
        "sftp-openssh": "openssh_server",
        "sftp-inprocess": "inprocess_server",
    }[request.param]
    return _sftp_peer(request.getfixturevalue(server_fixture), request.param)


@pytest.fixture
def national() -> Iterator[NationalRestSystem]:
    with rest_server() as system:
        yield system
