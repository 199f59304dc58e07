"""Airflow connections, transport settings and remote-name rules."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from i2es_hub.connections import get_connection, parse_connection
from i2es_hub.errors import ConfigError
from i2es_hub.transports import (
    FileDropConfig,
    OutboundMessage,
    SftpConfig,
    name_problem,
    transport_config,
)

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO4mqpjlwnUotBcyfLYKrszawUjJfK76F3yj4fVqevKo"
PEM = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nsecretbits\n-----END OPENSSH PRIVATE KEY-----"
)


def test_uri_form_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    uri = (
        f"sftp://hub%40fr:p%40ss%2Fword@127.0.0.1:2222"
        f"?host_key={quote(KEY, safe='')}&private_key={quote(PEM, safe='')}"
    )
    monkeypatch.setenv("AIRFLOW_CONN_FR_SFTP", uri)
    conn = get_connection("fr_sftp")

    assert (conn.conn_type, conn.host, conn.port) == ("sftp", "127.0.0.1", 2222)
    assert (conn.login, conn.password) == ("hub@fr", "p@ss/word")
    assert conn.extra["host_key"] == KEY
    assert conn.extra["private_key"] == PEM
    shown = repr(conn) + str(conn)
    assert "p@ss/word" not in shown
    assert "secretbits" not in shown
    assert KEY in shown  # a public key is not a secret


def test_json_form_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    value = {
        "conn_type": "http",
        "host": "api.example.org",
        "port": "443",
        "login": "hub",
        "password": "hunter2",
        "extra": {"token": "tok-123"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_FR_REST", json.dumps(value))
    conn = get_connection("fr_rest")

    assert (conn.host, conn.port, conn.extra["token"]) == (
        "api.example.org",
        443,
        "tok-123",
    )
    assert "hunter2" not in repr(conn)
    assert "tok-123" not in repr(conn)


def test_undefined_connection_says_how_to_define_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_CONN", raising=False)
    with pytest.raises(ConfigError, match="AIRFLOW_CONN_NO_SUCH_CONN"):
        get_connection("no_such_conn")


def test_unparsable_connection_does_not_echo_secrets() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_connection("x", '{"password": "hunter2", ')
    assert "hunter2" not in str(caught.value)


def _sftp(**overrides: object) -> dict[str, object]:
    return {
        "conn_id": "fr_sftp",
        "inbox": "in",
        "outbox": "out",
        "archive_dir": "done",
        **overrides,
    }


@pytest.mark.parametrize(
    ("data", "key"),
    [
        (_sftp(conn_id=None), "conn_id"),
        (_sftp(archive_dir=None), "archive_dir"),
        (_sftp(min_age="soon"), "min_age"),
        (_sftp(workers=0), "workers"),
        (_sftp(after_pull="shred"), "after_pull"),
        (_sftp(passwd="x"), "passwd"),
    ],
)
def test_sftp_settings_errors_name_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key) as caught:
        SftpConfig.from_mapping("fr-sftp", "FR", data)
    assert "fr-sftp" in str(caught.value)


def test_transport_config_picks_the_type() -> None:
    config = transport_config(
        "fr-drop",
        "FR",
        {"type": "filedrop", "inbox": "in", "outbox": "out", "after_pull": "delete"},
    )
    assert isinstance(config, FileDropConfig)
    assert config.rules.inbox == "in"
    with pytest.raises(ConfigError, match="'type'"):
        transport_config("fr-x", "FR", {"type": "carrier-pigeon"})
    with pytest.raises(ConfigError, match="country"):
        SftpConfig.from_mapping("fr-sftp", "France", _sftp())


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "../x.xml",
        "a/b.xml",
        "a\\b.xml",
        "a\x00.xml",
        "a\nb.xml",
        "é" * 200,
    ],
)
def test_hostile_names(name: str) -> None:
    assert name_problem(name) is not None


@pytest.mark.parametrize("name", ["EA-2026-0001.xml", "Autorisation é.xml", "a..b.xml"])
def test_plain_names(name: str) -> None:
    assert name_problem(name) is None


def test_outbound_message_names() -> None:
    message = OutboundMessage("msg-1", "EA-1.xml", b"")
    assert message.remote_name == "msg-1_EA-1.xml"
    assert message.temporary_name == ".tmp-msg-1"
    with pytest.raises(ValueError, match="message id"):
        OutboundMessage("../x", "EA-1.xml", b"")
    with pytest.raises(ValueError, match="path separator"):
        OutboundMessage("msg-1", "../EA-1.xml", b"")
