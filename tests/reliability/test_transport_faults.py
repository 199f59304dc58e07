"""Transport faults seen from the outbox and the pull: each ends in a retry or a
clear, parked failure, and nothing is lost or doubled.

The transports' own reactions (a status retried, a drop made transient) are in
tests/transports; here the whole step runs (``exchange.push`` or ``pull``) and
the test reads what the hub recorded: delivery states and ``last_error``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import secrets
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from i2es_hub import outbox, store
from i2es_hub.connections import parse_connection
from i2es_hub.connectors import Connector
from i2es_hub.errors import TransientTransportError
from i2es_hub.exchange import pull, push
from i2es_hub.simulators.national import generate, national_system
from i2es_hub.simulators.rest_server import rest_server
from i2es_hub.simulators.sftp_server import SftpServer, free_port, sftp_server
from i2es_hub.transports import open_transport
from tests.reliability.support import (
    census,
    connector_for,
    count_documents,
    delivery_states,
    ingest_addressed_to,
    journal_keys,
    report,
    rest_receiver,
)
from tests.reliability.tls import make_ca_and_server

LATER = dt.timedelta(hours=7)
NO_TOKEN = parse_connection("ch_swissmedic_api", '{"conn_type": "http"}')


def _deliveries(engine: Engine, recipient: str) -> list[dict]:
    dl = store.deliveries
    with store.read_transaction(engine) as conn:
        query = select(dl).where(dl.c.recipient == recipient).order_by(dl.c.seq)
        return [dict(r) for r in conn.execute(query).mappings()]


def _rest_connector(tmp_path: Path, base_url: str, **extra: object):  # noqa: ANN202
    settings = {"backoff": 0.01, "max_backoff": 2, "max_attempts": 3, **extra}
    return connector_for("ch-swissmedic", tmp_path, base_url=base_url, **settings)


# ----- REST peer: status codes, Retry-After, slowness, truncation ---------------------


def test_rest_5xx_retries_then_parks_naming_the_peer(
    engine: Engine, tmp_path: Path
) -> None:
    ingest_addressed_to(engine, "CH", 2, prefix="F5")
    with rest_server() as national:
        connector = _rest_connector(tmp_path, national.base_url)
        national.inject("status", count=10_000, status=503)
        now = store.utcnow()
        states = []
        for _ in range(outbox.MAX_ATTEMPTS):
            push(connector, engine, connection=NO_TOKEN, now=now)
            states.append(_deliveries(engine, "CH")[0]["state"])
            now += LATER
        assert states[:-1] == ["retrying"] * (outbox.MAX_ATTEMPTS - 1)
        assert states[-1] == "failed"
        parked = _deliveries(engine, "CH")
        for row in parked:
            assert row["state"] == "failed" and row["next_attempt_at"] is None
            assert "CH/ch-swissmedic" in row["last_error"]
            assert "HTTP 503" in row["last_error"]
            assert "check that the national system is up" in row["last_error"]
        assert national.pushed == []

        # The operator replays once the peer is back: delivered once each.
        national.clear_faults()
        with store.write_transaction(engine) as conn:
            assert outbox.replay_failed(conn, store.utcnow(), recipient="CH") == 2
        assert push(connector, engine, connection=NO_TOKEN).delivered == 2
    assert len({p.key for p in national.pushed}) == len(national.pushed) == 2
    report("fault rest-5xx", attempts=outbox.MAX_ATTEMPTS, parked=2, replayed=2)


def test_rest_429_with_retry_after_is_honoured_then_delivered(
    engine: Engine, tmp_path: Path
) -> None:
    ingest_addressed_to(engine, "CH", 1, prefix="F4")
    with rest_server() as national:
        connector = _rest_connector(tmp_path, national.base_url, max_backoff=3)
        national.inject("status", count=2, status=429, retry_after=1)
        assert push(connector, engine, connection=NO_TOKEN).delivered == 1
        assert national.requests.count("POST /incoming") == 3

        # A Retry-After beyond what the connector waits: retried by the outbox.
        ingest_addressed_to(engine, "CH", 1, prefix="F4b")
        national.inject("status", count=1, status=429, retry_after=120)
        result = push(connector, engine, connection=NO_TOKEN)
        [row] = [r for r in _deliveries(engine, "CH") if r["state"] != "delivered"]
        assert result.retrying == 1 and row["state"] == "retrying"
        assert "HTTP 429" in row["last_error"]
        assert (
            push(
                connector, engine, connection=NO_TOKEN, now=store.utcnow() + LATER
            ).delivered
            == 1
        )
    assert len(national.pushed) == 2
    report("fault rest-429", delivered=2, retried_by_outbox=1)


@pytest.mark.parametrize("fault", ["slow", "truncate"])
def test_rest_slow_or_truncated_answers_end_in_retry(
    fault: str, engine: Engine, tmp_path: Path
) -> None:
    ingest_addressed_to(engine, "CH", 3, prefix=f"F{fault[:2]}")
    with rest_server() as national:
        connector = _rest_connector(tmp_path, national.base_url, timeout=0.5)
        national.inject(fault, count=3, delay=2.0)  # the whole budget of one message
        result = push(connector, engine, connection=NO_TOKEN)
        assert result.retrying == 3 and result.delivered == 0
        for row in _deliveries(engine, "CH"):
            assert "CH/ch-swissmedic" in row["last_error"]
            assert "retry" in row["last_error"]
        assert (
            push(
                connector, engine, connection=NO_TOKEN, now=store.utcnow() + LATER
            ).delivered
            == 3
        )
    ids = {p.key for p in national.pushed}
    assert ids == set(delivery_states(engine, "CH"))
    report(f"fault rest-{fault}", deliveries=3, delivered_once_each=len(ids))


# ----- TLS -------------------------------------------------------------------------


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[str, Path, Path, str]]:
    """A journaling REST receiver under TLS; yields URL, its CA, journal, token."""
    ca, cert, key = make_ca_and_server(tmp_path / "pki")
    port, token = free_port(), secrets.token_urlsafe(12)
    journal = tmp_path / "journal.jsonl"
    with rest_receiver(port, journal, token, tmp_path / "tls.log", tls=(cert, key)):
        yield f"https://127.0.0.1:{port}", ca, journal, token


def test_wrong_tls_certificate_is_permanent_not_retried(
    engine: Engine, tmp_path: Path, tls_receiver: tuple[str, Path, Path, str]
) -> None:
    url, ca, journal, token = tls_receiver
    ingest_addressed_to(engine, "CH", 2, prefix="TLS")
    connection = parse_connection(
        "ch_swissmedic_api",
        json.dumps({"conn_type": "http", "extra": {"token": token}}),
    )
    other_ca, _, _ = make_ca_and_server(tmp_path / "other", label="other")

    # Unknown CA (system trust store), then the wrong CA: parked at once.
    for bundle in (None, other_ca):
        extra = {"ca_bundle": str(bundle)} if bundle else {}
        connector = _rest_connector(tmp_path, url, **extra)
        result = push(connector, engine, connection=connection)
        assert (result.failed, result.retrying, result.delivered) == (2, 0, 0)
        for row in _deliveries(engine, "CH"):
            assert row["state"] == "failed"
            assert "CH/ch-swissmedic" in row["last_error"]
            assert "TLS certificate was refused" in row["last_error"]
            assert "ca_bundle" in row["last_error"]
        with store.write_transaction(engine) as conn:
            outbox.replay_failed(conn, store.utcnow(), recipient="CH")
    assert journal_keys(journal) == []

    # With the country's CA in the connector file, the same deliveries go through.
    connector = _rest_connector(tmp_path, url, ca_bundle=str(ca))
    assert push(connector, engine, connection=connection).delivered == 2
    assert sorted(journal_keys(journal)) == sorted(delivery_states(engine, "CH"))
    report("fault tls-wrong-certificate", parked=2, after_ca_bundle="delivered 2")


# ----- SFTP server stopped mid-transfer and mid-listing ------------------------------


def test_sftp_server_stopped_mid_pull_leaves_every_file_for_the_next_pull(
    engine: Engine, tmp_path: Path
) -> None:
    with sftp_server("auto", tmp_path / "sftp") as server:
        connector, connection = _sftp_connector(server, tmp_path)
        inbox = server.root / "inbox"
        for name, data in generate(connector, 600):
            (inbox / name).write_bytes(data)

        # Stopped mid-transfer: the server's sessions die while files are read.
        with open_transport(connector.transport, connection) as session:
            fetched = session.fetch(session.list_ready())
            assert next(fetched).ok
            sessions = server.drop_connections()
            with pytest.raises(TransientTransportError) as caught:
                for _ in fetched:
                    pass
        assert "KE/ke-ppb" in str(caught.value) and "retry" in str(caught.value)

        # Stopped mid-listing: the session is gone when the listing starts.
        with open_transport(connector.transport, connection) as session:
            sessions += server.drop_connections()
            with pytest.raises(TransientTransportError, match="KE/ke-ppb"):
                session.list_ready()
        assert len([p for p in inbox.iterdir() if p.is_file()]) == 600

        archived = sum(
            pull(connector, engine, connection=connection).archived
            for _ in range(3)  # the connector takes 200 files a run
        )
    assert archived == 600 and count_documents(engine) == 600
    assert census(engine).duplicates == 0
    report("fault sftp-stopped", sessions_killed=sessions, files=600, losses=0)


def _sftp_connector(server: SftpServer, tmp_path: Path) -> tuple[Connector, Any]:
    for folder in ("inbox", "outbox", "inbox/archive"):
        (server.root / folder).mkdir(parents=True, exist_ok=True)
    connector = connector_for(
        "ke-ppb",
        tmp_path,
        inbox="inbox",
        outbox="outbox",
        archive_dir="inbox/archive",
        min_age=0,
    )
    return connector, parse_connection("ke_ppb_sftp", server.connection_uri())


def test_file_growing_while_listed_is_taken_only_when_whole(
    engine: Engine, tmp_path: Path
) -> None:
    with sftp_server("auto", tmp_path / "sftp") as server:
        connector, connection = _sftp_connector(server, tmp_path)
        [(name, data)] = generate(connector, 1)
        path = server.root / "inbox" / name
        path.write_bytes(data[: len(data) // 2])
        with open_transport(connector.transport, connection) as session:
            [listed] = session.list_ready()
            path.write_bytes(data)  # the sender goes on writing
            [fetched] = list(session.fetch([listed]))
        assert not fetched.ok and fetched.error is not None
        assert "changed size" in str(fetched.error) and fetched.error.retriable
        assert path.exists()

        result = pull(connector, engine, connection=connection)
    assert result.outcomes == {"accepted": 1} or result.outcomes == {"held": 1}
    assert census(engine).quarantined == 0
    report("fault file-growing", taken_partial=0, taken_whole=1)


# ----- disk full on the hub's side ---------------------------------------------


@contextlib.contextmanager
def _tiny_disk(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill ({done.stderr.strip()})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_full_local_disk_under_a_file_drop_outbox_ends_in_retry(
    engine: Engine, tmp_path: Path
) -> None:
    ingest_addressed_to(engine, "DE", 5, prefix="DF")
    drop = tmp_path / "drop"
    (drop / "inbox" / "archive").mkdir(parents=True)
    with _tiny_disk(drop / "outbox", "64k") as full:
        (full / "ballast").write_bytes(b"\0" * 60_000)
        with contextlib.suppress(OSError), open(full / "ballast2", "wb") as fill:
            fill.write(b"\0" * 65536)
        connector = connector_for(
            "de-bfarm",
            tmp_path,
            inbox=str(drop / "inbox"),
            outbox=str(full),
            archive_dir=str(drop / "inbox" / "archive"),
            min_age=0,
        )
        result = push(connector, engine)
        assert result.delivered == 0 and result.retrying == 5
        for row in _deliveries(engine, "DE"):
            assert "No space left on device" in row["last_error"]
            assert "DE/de-bfarm" in row["last_error"]
        assert sorted(p.name for p in full.iterdir()) == ["ballast", "ballast2"]

        for ballast in full.iterdir():
            ballast.unlink()
        again = push(connector, engine, now=store.utcnow() + LATER)
        delivered = [p for p in full.iterdir() if not p.name.startswith(".")]
    assert again.delivered == 5
    assert Counter(delivery_states(engine, "DE").values()) == {"delivered": 5}
    assert delivered
    report("fault disk-full outbox", retrying=5, then_delivered=5, partial_files=0)


def test_full_disk_under_the_hub_database_loses_nothing(tmp_path: Path) -> None:
    with _tiny_disk(tmp_path / "db", "300k") as disk:
        url = f"sqlite:///{disk / 'hub.db'}"
        engine = store.get_engine(url)
        from i2es_hub import db

        db.upgrade(engine)
        with national_system("de-bfarm", tmp_path / "national") as germany:
            for name, data in generate(germany.connector, 400, per_file=50):
                germany.send(name, data)
            inbox = tmp_path / "national" / "drop" / "inbox"
            with pytest.raises(Exception, match="full") as caught:
                pull(germany.connector, engine, connection=germany.connection)
            stored_when_full = count_documents(engine)
            assert len([p for p in inbox.iterdir() if p.is_file()]) == 8

            subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
            again = pull(germany.connector, engine, connection=germany.connection)
        counts = census(engine)
        engine.dispose()
        store.get_engine.cache_clear()
    assert counts.documents == 400 and counts.duplicates == 0
    assert again.archived == 8
    report(
        "fault disk-full database",
        error=type(caught.value).__name__,
        stored_when_full=stored_when_full,
        documents=400,
        losses=0,
        duplicates=0,
    )
