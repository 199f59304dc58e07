"""Alert latency under the real Airflow scheduler.

Starts what ``make up`` starts (scheduler, DAG processor, triggerer, API server on
127.0.0.1, LocalExecutor, SQLite) with Kenya's simulated SFTP system and Germany's
file drop. Each round stores an import and an export authorization, drops Kenya's
shortfall endorsement into its SFTP inbox and triggers ``connector_ke-ppb``; the
ingest announces the SHORTFALL alert on the ``i2es-hub://alerts`` asset, and the
scheduler's ``hub_alerts`` run pushes it into Germany's drop folder.

The figure is the time from the alert being raised (stored with the endorsement) to
its delivery; the reference is the connector run that stored the endorsement, from
its trigger to the commit, on the same scheduler in the same round: both are one DAG
run's worth of scheduling, so the ratio says what the asset hop costs beside it.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import time
from pathlib import Path

import httpx
from sqlalchemy import select

from bench.common import ROOT, figure, write
from i2es_hub import db, demo, orchestration, store
from i2es_hub.ingest import Pipeline
from i2es_hub.simulators.national import NationalSystem, sample
from i2es_hub.submissions import Submission

ROUNDS = int(os.environ.get("BENCH_ALERT_ROUNDS", "3"))
WORK = ROOT / "bench" / "work" / "alert"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _login(base: str) -> dict[str, str]:
    for _ in range(180):
        try:
            if httpx.get(f"{base}/api/v2/monitor/health", timeout=2).is_success:
                break
        except httpx.HTTPError:
            pass
        time.sleep(1)
    passwords = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    password = json.loads(passwords.read_text())["admin"]
    answer = httpx.post(
        f"{base}/auth/token", json={"username": "admin", "password": password}
    )
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def _unpause(base: str, headers: dict[str, str], dag_ids: list[str]) -> None:
    for _ in range(180):
        listed = httpx.get(f"{base}/api/v2/dags", headers=headers).json()
        if set(dag_ids) <= {d["dag_id"] for d in listed.get("dags", [])}:
            break
        time.sleep(1)
    for dag_id in dag_ids:
        httpx.patch(
            f"{base}/api/v2/dags/{dag_id}", headers=headers, json={"is_paused": False}
        ).raise_for_status()


def _round(
    i: int, base: str, headers: dict[str, str], ke: NationalSystem
) -> tuple[float, float]:
    """One endorsement through the scheduler; (alert delay, connector run) in s."""
    ia, ea = f"KE-IA-2026-9{i:04d}", f"DE-EA-2026-9{i:04d}"
    pipeline = Pipeline(store.get_engine())
    for sender, name in (
        ("KE", "import-authorization"),
        ("DE", "export-authorization"),
    ):
        data = (ROOT / "examples" / f"{name}.xml").read_bytes()
        data = data.replace(b"KE-IA-2026-00042", ia.encode())
        data = data.replace(b"DE-EA-2026-7781", ea.encode())
        [result] = pipeline.ingest([Submission(data, sender, "bench", name)])
        assert result.outcome == "accepted", result
    endorsement = sample("ke-ppb", "endorsement-shortfall.xml")
    endorsement = endorsement.replace(b"DE-EA-2026-7781", ea.encode())
    endorsement = endorsement.replace(
        b"KE-EN-2026-00108", f"KE-EN-2026-9{i:04d}".encode()
    )
    ke.send(f"KE-EN-2026-9{i:04d}.xml", endorsement)
    triggered = time.time()
    httpx.post(
        f"{base}/api/v2/dags/connector_ke-ppb/dagRuns",
        headers=headers,
        json={"logical_date": None},
    ).raise_for_status()

    a, dl = store.alerts, store.deliveries
    query = (
        select(a.c.created_at, dl.c.delivered_at)
        .join(dl, dl.c.alert_id == a.c.id)
        .join(store.documents, store.documents.c.id == a.c.document_id)
        .where(
            a.c.code == "SHORTFALL", store.documents.c.number == f"KE-EN-2026-9{i:04d}"
        )
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        with store.read_transaction(store.get_engine()) as conn:
            row = conn.execute(query).first()
        if row is not None and row.delivered_at is not None:
            raised = row.created_at.timestamp()
            return row.delivered_at.timestamp() - raised, raised - triggered
        time.sleep(0.2)
    raise RuntimeError(f"round {i}: the SHORTFALL alert was not delivered in 300 s")


def main() -> None:
    port = _free_port()
    demo._prepare(WORK, api_port=port)
    db.upgrade(store.get_engine())
    orchestration.sync_connector_modules(ROOT / "dags")
    demo.migrate_airflow()
    delays, runs = [], []
    with (
        demo.national_systems(WORK) as systems,
        demo.airflow_components(dict(os.environ)),
    ):
        base = f"http://127.0.0.1:{port}"
        headers = _login(base)
        _unpause(base, headers, ["connector_ke-ppb", "hub_alerts"])
        for i in range(ROUNDS):
            delay, run = _round(i, base, headers, systems["ke-ppb"])
            print(
                f"round {i}: alert raised -> delivered {delay:.1f} s; "
                f"connector run trigger -> endorsement stored {run:.1f} s"
            )
            delays.append(delay)
            runs.append(run)
    write(
        "alert",
        [
            figure(
                f"SHORTFALL alert raised -> delivered to DE under the scheduler "
                f"(median of {ROUNDS})",
                statistics.median(delays),
                "s",
                "connector_ke-ppb run, trigger -> endorsement stored (median)",
                statistics.median(runs),
            )
        ],
    )


if __name__ == "__main__":
    main()
