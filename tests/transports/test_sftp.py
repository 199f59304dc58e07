"""SFTP specifics: host key pinning, authentication, unreachable servers."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from i2es_hub.connections import ConnectionInfo
from i2es_hub.errors import (
    ConfigError,
    PermanentTransportError,
    TransientTransportError,
)
from i2es_hub.simulators.sftp_server import SftpServer, free_port, new_ed25519_key
from i2es_hub.transports import open_transport

from .conftest import Peer


def test_unknown_host_key_is_refused_with_how_to_pin(sftp_peer: Peer) -> None:
    _, other_key = new_ed25519_key()
    connection = sftp_peer.connection(host_key=other_key)
    assert sftp_peer.sftp is not None
    server_type, server_b64 = sftp_peer.sftp.host_key.split()

    with (
        pytest.raises(PermanentTransportError) as caught,
        open_transport(sftp_peer.config(), connection),
    ):
        pass

    message = str(caught.value)
    assert "refused the host key" in message
    assert f"ssh-keyscan -p {sftp_peer.sftp.port} -t ed25519 127.0.0.1" in message
    assert "'host_key'" in message
    assert server_b64 in message  # what to pin once verified
    assert "SHA256:" in message
    assert "fr_sftp" in message


def test_pinned_key_of_another_type_is_refused(sftp_peer: Peer) -> None:
    # A pinned ECDSA key while the server only has Ed25519: nothing matches.
    ecdsa = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        .decode()
    )
    connection = sftp_peer.connection(host_key=ecdsa)
    with (
        pytest.raises(PermanentTransportError, match="refused the host key"),
        open_transport(sftp_peer.config(), connection),
    ):
        pass


def test_missing_host_key_is_a_config_error(sftp_peer: Peer) -> None:
    connection = sftp_peer.connection()
    assert connection is not None
    extra = {k: v for k, v in connection.extra.items() if k != "host_key"}
    connection = dataclasses.replace(connection, extra=extra)
    with (
        pytest.raises(ConfigError, match="'host_key' is required.*ssh-keyscan"),
        open_transport(sftp_peer.config(), connection),
    ):
        pass


def test_wrong_key_login_is_permanent_and_names_the_connection(sftp_peer: Peer) -> None:
    stranger, _ = new_ed25519_key()
    connection = sftp_peer.connection(private_key=stranger)
    with (
        pytest.raises(PermanentTransportError) as caught,
        open_transport(sftp_peer.config(), connection),
    ):
        pass
    assert "was refused" in str(caught.value)
    assert "fr_sftp" in str(caught.value)
    assert "PRIVATE KEY" not in str(caught.value)


def test_password_login(inprocess_server: SftpServer) -> None:
    from i2es_hub.connections import parse_connection

    from .conftest import _sftp_peer

    peer = _sftp_peer(inprocess_server, "sftp-inprocess")
    uri = inprocess_server.connection_uri(use_password=True)
    good = parse_connection("fr_sftp", uri)
    peer.drop("EA-1.xml", b"<a/>")
    with open_transport(peer.config(), good) as transport:
        assert [f.name for f in transport.list_ready()] == ["EA-1.xml"]

    bad = dataclasses.replace(good, password="not-the-password")
    with (
        pytest.raises(PermanentTransportError) as caught,
        open_transport(peer.config(), bad),
    ):
        pass
    assert "not-the-password" not in str(caught.value)
    assert inprocess_server.password is not None
    assert inprocess_server.password not in repr(good)


def test_unreachable_server_is_transient(sftp_peer: Peer) -> None:
    connection = sftp_peer.connection()
    assert isinstance(connection, ConnectionInfo)
    closed = dataclasses.replace(connection, port=free_port())
    with (
        pytest.raises(TransientTransportError) as caught,
        open_transport(sftp_peer.config(), closed),
    ):
        pass
    assert f"127.0.0.1:{closed.port}" in str(caught.value)
    assert caught.value.__cause__ is not None


def test_missing_inbox_folder_is_permanent(sftp_peer: Peer) -> None:
    config = sftp_peer.config(inbox="no/such/folder")
    with (
        open_transport(config, sftp_peer.connection()) as transport,
        pytest.raises(PermanentTransportError, match="no/such/folder.*'inbox'"),
    ):
        transport.list_ready()


def test_delete_after_pull(sftp_peer: Peer) -> None:
    sftp_peer.drop("EA-1.xml", b"<a/>")
    config = sftp_peer.config(after_pull="delete", archive_dir=None)
    with open_transport(config, sftp_peer.connection()) as transport:
        ready = transport.list_ready()
        assert transport.archive(ready) == 1
    assert sftp_peer.inbox() == set()
    assert sftp_peer.archived() == set()


def test_archiving_a_name_seen_before_keeps_both(sftp_peer: Peer) -> None:
    assert sftp_peer.root is not None
    (sftp_peer.root / "archive" / "EA-1.xml").write_bytes(b"<old/>")
    sftp_peer.drop("EA-1.xml", b"<new/>")
    with open_transport(sftp_peer.config(), sftp_peer.connection()) as transport:
        assert transport.archive(transport.list_ready()) == 1
    archived = sftp_peer.archived()
    assert len(archived) == 2
    assert "EA-1.xml" in archived
