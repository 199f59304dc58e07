"""The real DAGs, run with dag.test() against the sample national systems.

SFTP (Kenya), file drop (Germany) and REST (Switzerland) run on loopback; the
hub database is a migrated SQLite file; Airflow's metadata database is the
session's migrated one. The alert DAG runs when a connector run recorded an
event on the alerts asset, as the scheduler would.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from i2es_hub import db, demo, store


@pytest.fixture
def hub_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    monkeypatch.setenv("I2ES_HUB_DATABASE_URL", url)
    (tmp_path / "estimates.csv").write_text(demo.ESTIMATES_CSV)
    monkeypatch.setenv(
        "I2ES_HUB_ESTIMATES_SOURCE", f"path:{tmp_path / 'estimates.csv'}"
    )
    db.upgrade(store.get_engine(url))
    return url


def test_exchange_cycle_routes_documents_and_delivers_alerts(
    airflow_home: Path,
    dags_folder: Path,
    hub_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("I2ES_HUB_CONNECTORS_DIR", raising=False)
    with demo.national_systems(tmp_path) as systems:
        runner = demo.Runner(dags_folder)
        demo.cycle(systems, runner)
        received = {name: s.received() for name, s in systems.items()}

    assert runner.states
    assert all("success" in state for _, state in runner.states)
    assert [d for d, _ in runner.states].count("hub_alerts") >= 2

    engine = store.get_engine(hub_db)
    d, al, dl = store.documents, store.alerts, store.deliveries
    with store.read_transaction(engine) as conn:
        docs = {r.number: r.state for r in conn.execute(select(d.c.number, d.c.state))}
        alerts = conn.execute(
            select(al.c.code, al.c.country, dl.c.state).join(
                dl, dl.c.alert_id == al.c.id
            )
        ).all()
        undelivered = conn.execute(
            select(dl.c.id).where(dl.c.state.in_(("pending", "retrying", "failed")))
        ).all()

    assert docs == {
        "KE-IA-2026-00042": "accepted",
        "CH-IA-2026-0311": "accepted",
        "DE-EA-2026-7781": "endorsed",
        "DE-EA-2026-7790": "endorsed",
        "KE-EN-2026-00108": "accepted",
        "CH-EN-2026-0077": "accepted",
    }
    assert sorted((code, country, state) for code, country, state in alerts) == [
        ("EXCESS_ESTIMATE", "DE", "delivered"),
        ("SHORTFALL", "DE", "delivered"),
        ("SHORTFALL", "DE", "delivered"),
    ]
    assert undelivered == []
    # Germany got both import authorizations, both endorsements and three alerts;
    # each importer got the export authorization addressed to it.
    assert len(received["de-bfarm"]) == 7
    assert len(received["ke-ppb"]) == 1
    assert len(received["ch-swissmedic"]) == 1
    assert b"EXCESS_ESTIMATE" in received["ch-swissmedic"][0][1]


def test_alert_dag_is_idempotent(
    airflow_home: Path, dags_folder: Path, hub_db: str
) -> None:
    runner = demo.Runner(dags_folder)

    assert "success" in runner.run("hub_alerts")
    assert "success" in runner.run("hub_alerts")
