"""The commit stage's fast paths store and carry exactly what the plain ones do.

``store.insert_many`` hands SQLite tuples straight to the driver; a stored row must
read back the same as one written by ``table.insert()``. Prepared candidates cross
from worker processes by pickle; a round trip must give back an equal candidate.
"""

from __future__ import annotations

import datetime as dt
import pickle
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import StatementError

from i2es_hub import store
from i2es_hub.ingest import Pipeline
from i2es_hub.submissions import Submission


def _alert_row(alert_id: str, at: dt.datetime) -> dict[str, object]:
    return {
        "id": alert_id,
        "code": "SHORTFALL",
        "country": "DE",
        "document_id": None,
        "line_no": 1,
        "message": "received 900 g of 1000 g — 100 g short",
        "figures": {"authorized": "1000.000", "received": "900.000"},
        "payload": b"<Alert>\x00\xff</Alert>",
        "created_at": at,
    }


def _read(engine: Engine, alert_id: str) -> dict[str, object]:
    a = store.alerts
    with store.read_transaction(engine) as conn:
        return dict(conn.execute(select(a).where(a.c.id == alert_id)).mappings().one())


def test_insert_many_stores_what_table_insert_stores(engine: Engine) -> None:
    at = dt.datetime(2026, 12, 4, 5, 6, 7, 890123, tzinfo=dt.UTC)
    with store.write_transaction(engine) as conn:
        conn.execute(store.alerts.insert(), [_alert_row("plain", at)])
        store.insert_many(
            conn, store.alerts, [_alert_row("fast-1", at), _alert_row("fast-2", at)]
        )

    plain = _read(engine, "plain")
    for alert_id in ("fast-1", "fast-2"):
        fast = _read(engine, alert_id)
        assert {k: v for k, v in fast.items() if k != "id"} == {
            k: v for k, v in plain.items() if k != "id"
        }


def test_insert_many_refuses_rows_whose_keys_differ(engine: Engine) -> None:
    # A row missing a key must not be stored with its values shifted into the
    # wrong columns: the batch fails, as table.insert() would, and nothing stays.
    at = store.utcnow()
    short = _alert_row("short", at)
    del short["figures"]
    rows = [_alert_row("full", at), short]
    with (
        pytest.raises(StatementError, match="figures"),
        store.write_transaction(engine) as conn,
    ):
        store.insert_many(conn, store.alerts, rows)

    a = store.alerts
    with store.read_transaction(engine) as conn:
        assert conn.execute(select(a.c.id)).all() == []


def test_prepared_candidate_survives_the_trip_from_a_worker(
    engine: Engine, example: dict[str, bytes]
) -> None:
    pipeline = Pipeline(engine)
    for name in ("import-authorization", "export-authorization", "endorsement"):
        sender = "DE" if name.startswith("export") else "KE"
        (candidate,) = pipeline.prepare(Submission(example[name], sender, "cli", name))
        assert candidate.doc is not None

        back = pickle.loads(pickle.dumps(candidate))

        assert back == candidate
        assert back.doc == candidate.doc
        assert back.doc.lines[0].quantity == candidate.doc.lines[0].quantity
        assert isinstance(back.doc.lines[0].quantity, Decimal)
        assert back.submission.data == example[name]
