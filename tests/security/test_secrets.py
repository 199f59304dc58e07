"""No secret in any log, error, repr, quarantine record, database row or task log.

One cycle with distinctive credentials through every place a secret passes:

* the API: a country token that works and forged ``S3CR3T-...`` tokens that fail;
* SFTP with a private key (the ``ke-ppb`` sample system), with a password (the
  in-process server), with a wrong password and with a passphrase-protected key
  that the server does not accept;
* REST with a bearer token (``ch-swissmedic``), and with a wrong one;
* the CLI (``-vv``) pulling and pushing through ``AIRFLOW_CONN_*``;
* an Airflow cycle: the connector DAGs run with ``dag.test()`` in a subprocess
  whose Airflow home is a temporary folder, connections from ``AIRFLOW_CONN_*``.

Everything said is collected (Python logging at DEBUG, subprocess output, every
file under the Airflow home, error messages and reprs, every database value)
and searched for each secret, raw and URL-encoded.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from i2es_hub import orchestration, store, tokens
from i2es_hub.api import create_app
from i2es_hub.connections import ConnectionInfo, parse_connection
from i2es_hub.errors import HubError
from i2es_hub.exchange import pull, push
from i2es_hub.simulators.national import NationalSystem, national_system, sample
from i2es_hub.simulators.sftp_server import sftp_server
from i2es_hub.transports import SftpConfig, open_transport

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_SCRIPT = Path(__file__).with_name("airflow_cycle.py")


def _fake(label: str) -> str:
    return f"S3CR3T-{label}-{uuid.uuid4()}"


def _forms(secret: str) -> set[str]:
    """The ways a secret could be written down: raw, URL-encoded, and for keys
    each base64 line of the body."""
    forms = {secret, quote(secret, safe="")}
    if "PRIVATE KEY" in secret:
        forms |= {
            line
            for line in secret.splitlines()
            if line and "PRIVATE KEY" not in line and len(line) >= 20
        }
    return {f for f in forms if len(f) >= 12}


def _secrets_of(system: NationalSystem) -> list[str]:
    info = system.connection
    if info is None:
        return []
    found = [info.password] if info.password else []
    found += [
        str(v)
        for k, v in info.extra.items()
        if k in ("private_key", "token", "private_key_passphrase")
    ]
    return found


def _encrypted_key(passphrase: str) -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.BestAvailableEncryption(passphrase.encode()),
    ).decode("ascii")


def _dump_database(engine: Engine) -> str:
    parts = []
    with engine.connect() as conn:
        for table in store.metadata.sorted_tables:
            for row in conn.execute(select(table)):
                for value in row:
                    if isinstance(value, bytes | bytearray | memoryview):
                        parts.append(bytes(value).decode("latin-1"))
                    else:
                        parts.append(str(value))
    return "\n".join(parts)


def _files_under(folder: Path) -> str:
    parts = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            parts.append(f"--- {path}\n" + path.read_bytes().decode("latin-1"))
    return "\n".join(parts)


def _sftp_settings(root: Path) -> dict[str, object]:
    for name in ("inbox", "outbox", "archive"):
        (root / name).mkdir(parents=True, exist_ok=True)
    return {
        "conn_id": "xx_sftp",
        "inbox": "inbox",
        "outbox": "outbox",
        "archive_dir": "archive",
        "min_age": 0,
        "timeout": 10,
        "connect_timeout": 5,
    }


def test_no_secret_is_written_anywhere(
    db_url: str,
    engine: Engine,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets: list[str] = []
    said: list[str] = []  # everything the hub answered, raised or printed

    # --- the API: a good token, forged and malformed ones ----------------------
    with store.write_transaction(engine) as conn:
        ke_token = str(tokens.create(conn, "KE", "secrets test").token)
    forged = _fake("api-token")
    secrets += [ke_token, forged]
    with TestClient(create_app(engine), raise_server_exceptions=False) as client:
        xml = {"Content-Type": "application/xml"}
        good = client.post(
            "/v1/documents",
            content=(ROOT / "examples" / "import-authorization.xml").read_bytes(),
            headers={**xml, "Authorization": f"Bearer {ke_token}"},
        )
        assert good.status_code == 202, good.text
        for header in (f"Bearer {forged}", forged, f"Basic {forged}"):
            answer = client.post(
                "/v1/documents",
                content=b"<x/>",
                headers={**xml, "Authorization": header},
            )
            assert answer.status_code == 401, answer.text
            said.append(answer.text + str(answer.headers))
        # A rejected upload with the token goes to quarantine: the record must
        # not carry the request's credentials.
        rejected = client.post(
            "/v1/documents",
            content=b"<not-canonical/>",
            headers={**xml, "Authorization": f"Bearer {ke_token}"},
        )
        assert rejected.status_code == 422
        said.append(good.text + rejected.text)

    # --- SFTP with a password, a wrong password and a locked key ---------------
    with sftp_server("inprocess", tmp_path / "pw-sftp") as server:
        assert server.password is not None
        secrets.append(server.password)
        config = SftpConfig.from_mapping("xx-sftp", "KE", _sftp_settings(server.root))
        good_conn = parse_connection(
            "xx_sftp", server.connection_uri(use_password=True)
        )
        said.append(repr(good_conn))
        with open_transport(config, good_conn) as transport:
            said.append(repr(transport))
            assert transport.list_ready() == []

        wrong_password = _fake("sftp-password")
        passphrase = _fake("key-passphrase")
        locked_key = _encrypted_key(passphrase)
        secrets += [wrong_password, passphrase, locked_key]
        base = parse_connection("xx_sftp", server.connection_uri())
        attempts = [
            ConnectionInfo(
                "xx_sftp",
                "sftp",
                base.host,
                base.port,
                base.login,
                wrong_password,
                {"host_key": base.extra["host_key"]},
            ),
            ConnectionInfo(
                "xx_sftp",
                "sftp",
                base.host,
                base.port,
                base.login,
                None,
                {
                    "host_key": base.extra["host_key"],
                    "private_key": locked_key,
                    "private_key_passphrase": passphrase,
                },
            ),
            ConnectionInfo(
                "xx_sftp",
                "sftp",
                base.host,
                base.port,
                base.login,
                None,
                {
                    "host_key": base.extra["host_key"],
                    "private_key": locked_key,
                    "private_key_passphrase": wrong_password,
                },
            ),
        ]
        for attempt in attempts:
            said.append(repr(attempt) + str(attempt))
            with (
                pytest.raises(HubError) as caught,
                open_transport(config, attempt) as t,
            ):
                t.list_ready()
            said.append(f"{caught.value}\n{caught.value!r}\n{caught.getrepr()}")

    # --- the sample national systems: SFTP key, file drop, REST token ----------
    hub_db = engine
    with (
        national_system("ke-ppb", tmp_path / "ke") as kenya,
        national_system("de-bfarm", tmp_path / "de") as germany,
        national_system("ch-swissmedic", tmp_path / "ch") as switzerland,
    ):
        systems = {"ke-ppb": kenya, "de-bfarm": germany, "ch-swissmedic": switzerland}
        for system in systems.values():
            secrets += _secrets_of(system)
            said.append(repr(system) + repr(system.connector) + repr(system.connection))

        kenya.send("KE-IA-1.xml", sample("ke-ppb", "import-authorization.xml"))
        kenya.send("KE-broken.xml", b"<PermitDocument/>")
        germany.send("BtM-AH-1.xml", sample("de-bfarm", "export-authorizations.xml"))
        for name in ("ke-ppb", "de-bfarm", "ch-swissmedic"):
            report = pull(
                systems[name].connector, hub_db, connection=systems[name].connection
            )
            said.append(report.summary() + repr(report))
        for name in ("ke-ppb", "de-bfarm", "ch-swissmedic"):
            report = push(
                systems[name].connector, hub_db, connection=systems[name].connection
            )
            said.append(report.summary() + repr(report))

        # REST with a wrong token: the error names the peer, never the token.
        wrong_token = _fake("rest-token")
        secrets.append(wrong_token)
        assert switzerland.connection is not None
        bad = ConnectionInfo(
            switzerland.connection.conn_id,
            "http",
            None,
            None,
            None,
            None,
            {"token": wrong_token},
        )
        switzerland.send(
            "CH-1.json", sample("ch-swissmedic", "import-authorization.json")
        )
        with pytest.raises(HubError) as caught:
            pull(switzerland.connector, hub_db, connection=bad)
        said.append(f"{caught.value}\n{caught.value!r}\n{caught.getrepr()}")

        # --- the CLI, credentials from AIRFLOW_CONN_* ------------------------------
        env = dict(
            os.environ,
            I2ES_HUB_DATABASE_URL=db_url,
            I2ES_HUB_CONNECTORS_DIR=str(tmp_path / "ke" / "connectors"),
            **kenya.env,
        )
        for command in (["pull", "ke-ppb"], ["push", "ke-ppb"], ["outbox", "list"]):
            done = subprocess.run(
                [sys.executable, "-m", "i2es_hub.cli", "-vv", *command],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            said.append(done.stdout + done.stderr)
            assert "Traceback" not in done.stderr, done.stderr

        # --- Airflow: the connector DAGs with dag.test(), in their own process -----
        kenya.send("KE-EN-1.xml", sample("ke-ppb", "endorsement-shortfall.xml"))
        switzerland.send(
            "CH-2.json", sample("ch-swissmedic", "endorsement-shortfall.json")
        )
        said.append(_airflow_cycle(tmp_path, db_url, systems))

    said.append(caplog.text)
    said.append(_dump_database(engine))
    everything = "\n".join(said)

    # The search finds a secret where one is meant to be: the one place the hub
    # prints a credential on purpose, ``tokens create``.
    created = subprocess.run(
        [sys.executable, "-m", "i2es_hub.cli", "tokens", "create", "--country", "KE"],
        env=dict(os.environ, I2ES_HUB_DATABASE_URL=db_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    printed = created.stdout.split()[-1]
    assert printed in created.stdout and _forms(printed)
    assert "SFTP KE/ke-ppb" in everything and "ch-swissmedic" in everything
    leaks = sorted(
        {form[:24] + "..." for s in secrets for form in _forms(s) if form in everything}
    )
    assert secrets and len(set(secrets)) == len(secrets)
    assert not leaks, f"secrets found in the output: {leaks}"


def _airflow_cycle(tmp: Path, db_url: str, systems: dict[str, NationalSystem]) -> str:
    """Run the connector DAGs in a subprocess; return its output and every file
    under its Airflow home (task logs, metadata database)."""
    home = tmp / "airflow"
    dags = tmp / "airflow-dags"
    shutil.copytree(ROOT / "dags", dags, ignore=shutil.ignore_patterns("connectors"))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "I2ES_HUB_"))
    }
    env.update(orchestration.airflow_env(home, dags_folder=dags))
    env.update(I2ES_HUB_DATABASE_URL=db_url)
    # Every system wrote its connector into its own folder; gather them in one.
    folder = tmp / "airflow-connectors"
    folder.mkdir()
    for name, system in systems.items():
        source = tmp / name.split("-")[0] / "connectors" / f"{name}.yaml"
        shutil.copy(source, folder / f"{name}.yaml")
        env.update(system.env)
    env["I2ES_HUB_CONNECTORS_DIR"] = str(folder)
    done = subprocess.run(
        [sys.executable, str(AIRFLOW_SCRIPT), str(dags), *systems],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    for name in systems:
        assert f"connector_{name}: success" in output, output[-3000:]
    # dag.test() runs the tasks in this process and logs them to its output; the
    # home keeps the metadata database (XComs, rendered fields) and any log file.
    assert "SFTP KE/ke-ppb: fetched 1 files" in output, output[-3000:]
    return output + _files_under(home)
