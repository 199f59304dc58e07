"""Operator and scheduled steps: held decisions, expiry, reconciliation, balances."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from i2es_hub import outbox, store
from i2es_hub.errors import ConflictError
from i2es_hub.ingest import Pipeline, Submission
from i2es_hub.operations import expire, reject_held, release_held
from i2es_hub.policy import Policy
from i2es_hub.reconcile import reconcile
from tests.conftest import EXAMPLES
from tests.test_ingest import one
from tests.test_ledger import balance, ea, en, estimate, ia


def held(engine, data, sender="KE"):
    policy = Policy(hold={"KE": frozenset({"EXCESS_ESTIMATE"})})
    [r] = Pipeline(engine, policy=policy).ingest([Submission(data, sender, "test")])
    return r


def test_released_document_takes_effect_and_is_routed(engine, example):
    estimate(engine, 500)
    r = held(engine, ia(example, 1000))
    assert r.outcome == "held" and balance(engine) == (500, 0, 0, 500)
    assert release_held(engine, r.document_id, "alice") == ["DE"]
    assert balance(engine) == (500, 1000, 0, -500)
    with engine.connect() as conn:
        status = outbox.document_status(conn, r.document_id)
    assert status is not None and status["document"]["state"] == "accepted"
    assert ("held", "accepted", "operator:alice") in [
        (a["from_state"], a["to_state"], a["actor"]) for a in status["audit"]
    ]
    assert [d["recipient"] for d in status["deliveries"]] == ["DE"]
    with pytest.raises(ConflictError, match="not held"):
        release_held(engine, r.document_id, "alice")


def test_rejected_held_document_leaves_no_trace_on_the_ledger(engine, example):
    estimate(engine, 500)
    r = held(engine, ia(example, 1000))
    reject_held(engine, r.document_id, "bob", "estimate exhausted")
    assert balance(engine) == (500, 0, 0, 500)
    with engine.connect() as conn:
        row = outbox.find_document(conn, r.document_id)
        assert row is not None and row["state"] == "rejected"
        assert outbox.list_deliveries(conn, "DE") == []


def test_expiry_releases_and_alerts_both_countries_once(engine, example):
    estimate(engine, 5000)
    one(engine, ia(example, 1000), "KE")
    one(engine, ea(example, 600), "DE")
    assert balance(engine) == (5000, 1000, 0, 4000)
    report = expire(engine, dt.date(2026, 6, 21))  # the export ended 2026-06-20
    assert (
        report.import_authorizations,
        report.export_authorizations,
        report.alerts,
    ) == (0, 1, 2)
    # its draw went back to the import authorization, still valid until September
    assert balance(engine) == (5000, 1000, 0, 4000)
    with engine.connect() as conn:
        to_de = [d["title"] for d in outbox.list_deliveries(conn, "DE")]
        to_ke = [d["title"] for d in outbox.list_deliveries(conn, "KE")]
    assert to_de.count("EXPIRED_UNENDORSED alert") == 1
    assert to_ke.count("EXPIRED_UNENDORSED alert") == 1
    assert expire(engine, dt.date(2026, 6, 21)).alerts == 0  # idempotent
    report = expire(engine, dt.date(2026, 9, 2))
    assert report.import_authorizations == 1
    assert balance(engine) == (5000, 0, 0, 5000)


def test_reconcile_adds_up_by_hand(engine, example):
    estimate(engine, 5000)
    one(engine, ia(example, 1000, **{"c:MultipleConsignments": "true"}), "KE")
    one(engine, ea(example, 600), "DE")
    one(engine, ea(example, 300, "DE-EA-2026-7782"), "DE")
    one(engine, en(example, 550), "KE")
    with engine.connect() as conn:
        report = reconcile(conn, "KE", 2026)
    [morphine] = report["substances"]
    assert morphine == {
        "substance": "morphine",
        "figure": 5000.0,
        "authorized": 1000.0,
        "exported": 900.0,
        "received": 550.0,
        "remaining": 450.0,
        # 1000 reserved - 600 released by the endorsement
        "reserved": 400.0,
        "available": 4050.0,
    }
    assert [e["number"] for e in report["open_export_authorizations"]] == [
        "DE-EA-2026-7782"
    ]


def test_ledger_commands_end_to_end(hub, tmp_path: Path):
    hub("db", "upgrade", check=True)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "country,substance,year,kind,grams,confirmed_on\n"
        "KE,morphine,2026,estimate,500,2026-01-01\n"
        "KE,morphine,2026,estimate,lots,2026-01-01\n"
    )
    r = hub("estimates", "load", str(bad))
    assert r.returncode != 0 and "line 3" in r.stderr
    assert json.loads(hub("balance", "--country", "KE", "--json").stdout) == []

    good = tmp_path / "est.csv"
    good.write_text(
        "country,substance,year,kind,grams,confirmed_on\n"
        "KE,morphine,2026,estimate,500,2026-01-01\n"
    )
    hub("estimates", "load", str(good), check=True)
    policy = tmp_path / "policy.yaml"
    policy.write_text("KE:\n  hold: [EXCESS_ESTIMATE]\n")
    r = hub(
        "ingest",
        "--json",
        "--policy",
        str(policy),
        "--from",
        "KE",
        str(EXAMPLES / "import-authorization.xml"),
        check=True,
    )
    [row] = [json.loads(x) for x in r.stdout.splitlines()]
    assert row["outcome"] == "held"
    [listed] = json.loads(hub("held", "list", "--json", check=True).stdout)
    hub("held", "release", listed["id"], "--operator", "carol", check=True)
    [bal] = json.loads(
        hub(
            "balance",
            "--country",
            "KE",
            "--substance",
            "morphine",
            "--json",
            check=True,
        ).stdout
    )
    assert bal == {
        "country": "KE",
        "substance": "morphine",
        "year": 2026,
        "kind": "estimate",
        "figure": 500.0,
        "reserved": 752.0,
        "consumed": 0.0,
        "available": -252.0,
    }
    text = hub("reconcile", "--country", "KE", "--year", "2026", check=True).stdout
    assert "morphine" in text and "752.000" in text
    r = hub("expire", "--as-of", "2026-12-31", check=True)
    assert "expired 1 import and 0 export authorizations" in r.stdout


def test_failed_delivery_is_replayed_from_the_cli(hub):
    hub("db", "upgrade", check=True)
    hub(
        "ingest", "--from", "KE", str(EXAMPLES / "import-authorization.xml"), check=True
    )
    engine = store.get_engine(hub.env["I2ES_HUB_DATABASE_URL"])
    with store.write_transaction(engine) as conn:
        [delivery] = outbox.due(conn, "DE", store.utcnow())
        state = outbox.mark_failed_attempt(
            conn, delivery, "DE inbox refused: 403", store.utcnow(), retriable=False
        )
    assert state == "failed"
    r = hub("outbox", "replay", "--to", "DE", check=True)
    assert "1 failed deliveries are pending again" in r.stdout
    listed = json.loads(hub("outbox", "list", "--to", "DE", "--json").stdout)
    assert [d["state"] for d in listed] == ["pending"]
