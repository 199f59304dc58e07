"""``python -m i2es_hub.demo``: a full exchange cycle through the hub's Airflow DAGs.

What it does, on loopback only, in a fresh work folder (``var/demo`` by default):

1. sets up an Airflow home (SQLite, LocalExecutor settings for 2 cores, API
   server on 127.0.0.1) and runs ``airflow db migrate``; migrates the hub
   database;
2. starts the sample national systems: Kenya over SFTP, Germany over a drop
   folder, Switzerland over REST; their credentials become Airflow connections
   (``AIRFLOW_CONN_*`` variables), never files;
3. runs the real DAGs with ``dag.test()``: the estimates refresh, then the
   connector DAGs as documents arrive (import authorizations, export
   authorizations, endorsements with shortfalls; one export authorization over
   the Swiss codeine estimate), and the alert DAG whenever a connector run
   emitted an event on the ``i2es-hub://alerts`` asset (the scheduler's job
   when Airflow runs for real);
4. prints a report and stops everything it started.

``python -m i2es_hub.demo up`` instead runs the Airflow components (scheduler,
DAG processor, triggerer, API server on 127.0.0.1) with the hub's DAGs until
Ctrl-C, and says where the login is.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from i2es_hub import orchestration

log = logging.getLogger(__name__)

WORK = orchestration.REPO_ROOT / "var" / "demo"
CONNECTORS = ("ke-ppb", "de-bfarm", "ch-swissmedic")
#: Kenya's morphine estimate is ample; Switzerland's codeine estimate (1 kg of
#: base) is below what its import authorization asks for, so the German export
#: authorization that draws on it is over the estimate: EXCESS_ESTIMATE.
ESTIMATES_CSV = """country,substance,year,kind,grams,confirmed_on
KE,morphine,2026,estimate,50000,2025-11-30
CH,codeine,2026,estimate,1000,2025-11-30
DE,morphine,2026,estimate,90000,2025-11-30
"""


def _prepare(work: Path, api_port: int = 8080) -> dict[str, str]:
    """Set the environment for the hub and Airflow; return what was set."""
    if work.exists():
        shutil.rmtree(work)
    (work / "airflow").mkdir(parents=True)
    env = orchestration.airflow_env(work / "airflow", api_port=api_port)
    env["I2ES_HUB_DATABASE_URL"] = f"sqlite:///{work / 'hub.db'}"
    env["I2ES_HUB_ESTIMATES_SOURCE"] = f"path:{work / 'estimates.csv'}"
    (work / "estimates.csv").write_text(ESTIMATES_CSV)
    os.environ.update(env)
    return env


def migrate_airflow() -> None:
    """``airflow db migrate`` for the home in the environment."""
    airflow = Path(sys.executable).with_name("airflow")
    started = time.monotonic()
    subprocess.run(
        [str(airflow), "db", "migrate"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    log.info("Airflow database migrated in %.0f s", time.monotonic() - started)


def _restore_environ(saved: dict[str, str]) -> None:
    os.environ.clear()
    os.environ.update(saved)


@contextlib.contextmanager
def national_systems(work: Path) -> Iterator[dict[str, Any]]:
    """Start the three sample national systems; credentials go to AIRFLOW_CONN_*."""
    from i2es_hub.simulators.national import national_system

    saved = dict(os.environ)
    with contextlib.ExitStack() as stack:
        # Whatever this sets (connections, connectors folder) is undone on exit.
        stack.callback(_restore_environ, saved)
        systems = {
            name: stack.enter_context(national_system(name, work / "national"))
            for name in CONNECTORS
        }
        # The DAGs read the sample connector files rewritten to reach the systems.
        os.environ["I2ES_HUB_CONNECTORS_DIR"] = str(work / "national" / "connectors")
        for system in systems.values():
            if system.connection is not None:
                os.environ.update(
                    orchestration.connection_env(
                        {
                            system.connection.conn_id: orchestration.connection_json(
                                system.connection
                            )
                        }
                    )
                )
        yield systems


class Runner:
    """Runs the hub's DAGs with ``dag.test()``, and the alert DAG on asset events."""

    def __init__(self, dags_folder: Path | None = None) -> None:
        from airflow.dag_processing.dagbag import DagBag

        dags_folder = dags_folder or Path(
            os.environ.get("AIRFLOW__CORE__DAGS_FOLDER")
            or orchestration.REPO_ROOT / "dags"
        )
        orchestration.sync_connector_modules(dags_folder)
        self.bag = DagBag(str(dags_folder))
        if self.bag.import_errors:
            raise RuntimeError(f"DAG import errors: {self.bag.import_errors}")
        self.states: list[tuple[str, str]] = []

    def run(self, dag_id: str) -> str:
        """Run one DAG to the end; returns its state."""
        dag = self.bag.dags[dag_id]
        started = time.monotonic()
        run = dag.test()
        state = str(getattr(run, "state", "unknown"))
        self.states.append((dag_id, state))
        log.info("%s: %s in %.1f s", dag_id, state, time.monotonic() - started)
        return state

    def run_connector(self, name: str) -> None:
        """Run a connector's DAG, then the alert DAG if it announced alerts."""
        before = alert_events()
        self.run(f"connector_{name}")
        if alert_events() > before:
            self.run("hub_alerts")


def alert_events() -> int:
    """How many events the ``i2es-hub://alerts`` asset has in Airflow's database."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return int(
            session.scalar(
                select(func.count(AssetEvent.id))
                .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
                .where(AssetModel.uri == orchestration.alerts_asset().uri)
            )
            or 0
        )


def cycle(systems: dict[str, Any], runner: Runner) -> dict[str, float]:
    """One exchange cycle; returns alert latencies in seconds by alert code."""
    from i2es_hub.simulators.national import sample

    ke, de, ch = (systems[n] for n in CONNECTORS)
    runner.run("hub_estimates_refresh")

    # Import authorizations: Kenya (morphine) and Switzerland (codeine).
    ke.send("KE-IA-2026-00042.xml", sample("ke-ppb", "import-authorization.xml"))
    ch.send(
        "CH-IA-2026-0311.json", sample("ch-swissmedic", "import-authorization.json")
    )
    runner.run_connector("ke-ppb")
    runner.run_connector("ch-swissmedic")

    # Export authorizations from Germany quoting them, in one batch file. The one
    # to Switzerland asks 2600 g where the import authorization allows 2500.5 g:
    # the extra is new demand on an estimate already exceeded (EXCESS_ESTIMATE,
    # an alert to Germany at once, and a warning that travels with the document).
    batch = sample("de-bfarm", "export-authorizations.xml").replace(
        b'<Menge einheit="g">2500,5</Menge>', b'<Menge einheit="g">2600</Menge>'
    )
    de.send("BtM-AH-2026-03.xml", batch)
    runner.run_connector("de-bfarm")

    # Endorsements: both report less than authorized (SHORTFALL to Germany).
    dropped = time.time()
    ke.send("KE-EN-2026-00108.xml", sample("ke-ppb", "endorsement-shortfall.xml"))
    runner.run_connector("ke-ppb")
    ch.send(
        "CH-EN-2026-0077.json", sample("ch-swissmedic", "endorsement-shortfall.json")
    )
    runner.run_connector("ch-swissmedic")
    return {"dropped": dropped}


def report(systems: dict[str, Any], runner: Runner, dropped: float) -> str:
    """The closing report."""
    from sqlalchemy import func, select

    from i2es_hub import store

    engine = store.get_engine()
    d, v, al, dl = (
        store.documents,
        store.document_versions,
        store.alerts,
        store.deliveries,
    )
    lines = ["", "i2es-hub demo: one exchange cycle through the Airflow DAGs", ""]
    with store.read_transaction(engine) as conn:
        lines.append("Documents per issuing country (state):")
        rows = conn.execute(
            select(d.c.issuer, d.c.doc_type, d.c.state, func.count())
            .group_by(d.c.issuer, d.c.doc_type, d.c.state)
            .order_by(d.c.issuer, d.c.doc_type)
        ).all()
        for issuer, doc_type, state, count in rows:
            lines.append(f"  {issuer}  {doc_type:<22} {state:<9} {count}")
        lines += ["", "Warnings carried with documents:"]
        for number, findings in conn.execute(
            select(d.c.number, v.c.findings)
            .join(v, (v.c.document_id == d.c.id) & (v.c.version == d.c.version))
            .order_by(d.c.number)
        ).all():
            for f in findings:
                if f["severity"] == "warning":
                    lines.append(f"  {number}: {f['code']}")
        lines += ["", "Alerts and their delivery:"]
        latencies = []
        for code, country, created, state, delivered in conn.execute(
            select(
                al.c.code, al.c.country, al.c.created_at, dl.c.state, dl.c.delivered_at
            )
            .join(dl, dl.c.alert_id == al.c.id)
            .order_by(al.c.created_at)
        ).all():
            lag = ""
            if delivered is not None:
                seconds = (delivered - created).total_seconds()
                lag = f" {seconds:.1f} s after it was raised"
                if code in ("SHORTFALL", "EXCESS_RECEIPT"):
                    latencies.append(seconds)
            lines.append(f"  {code:<16} to {country}: {state}{lag}")
    delivered_files = {
        name: [n for n, _ in system.received()] for name, system in systems.items()
    }
    lines += ["", "Files delivered to each national system:"]
    for name, files in delivered_files.items():
        lines.append(f"  {name}: {len(files)}")
    lines += ["", "DAG runs:"]
    lines += [f"  {dag_id}: {state}" for dag_id, state in runner.states]
    if latencies:
        lines += [
            "",
            f"Alert raised -> delivered: max {max(latencies):.1f} s "
            "(dag.test() runs the alert DAG at once; under the scheduler add its "
            "asset-trigger delay, a few seconds).",
        ]
    lines += [
        "",
        "Where to look next:",
        f"  hub database     {os.environ['I2ES_HUB_DATABASE_URL']}",
        f"  Airflow home     {os.environ['AIRFLOW_HOME']}",
        "  the UI           make up  (then http://127.0.0.1:8080)",
        "  operations       docs/operations.md",
        "  outbox           .venv/bin/i2es-hub outbox list --to DE  (with the same",
        "                   I2ES_HUB_DATABASE_URL)",
    ]
    return "\n".join(lines)


def demo(work: Path = WORK) -> int:
    """Run the demo; returns the exit status."""
    started = time.monotonic()
    _prepare(work)
    print(f"Airflow home and hub database in {work}")
    from i2es_hub import db, store

    db.upgrade(store.get_engine())
    print("Migrating the Airflow database (SQLite)...", flush=True)
    migrate_airflow()
    print("Starting the national systems (KE SFTP, DE file drop, CH REST)...")
    with national_systems(work) as systems:
        runner = Runner()
        print(f"Running the DAGs: {', '.join(sorted(runner.bag.dag_ids))}", flush=True)
        result = cycle(systems, runner)
        print(report(systems, runner, result["dropped"]))
    failed = [d for d, s in runner.states if "success" not in s]
    print(f"\nDone in {time.monotonic() - started:.0f} s; every process stopped.")
    return 1 if failed else 0


def up(work: Path = WORK / "up", api_port: int = 8080) -> int:
    """Run the Airflow components with the hub's DAGs until Ctrl-C."""
    work.mkdir(parents=True, exist_ok=True)
    env = orchestration.airflow_env(work / "airflow", api_port=api_port)
    env.setdefault(
        "I2ES_HUB_DATABASE_URL",
        os.environ.get("I2ES_HUB_DATABASE_URL") or f"sqlite:///{work / 'hub.db'}",
    )
    os.environ.update(env)
    from i2es_hub import db, store

    db.upgrade(store.get_engine())
    orchestration.sync_connector_modules(orchestration.REPO_ROOT / "dags")
    migrate_airflow()
    # Ctrl-C or SIGTERM (also when run in the background) stops every component.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with airflow_components(dict(os.environ)) as procs:
        passwords = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
        print(
            f"Airflow UI: http://127.0.0.1:{api_port}  (user admin; the generated "
            f"password is in {passwords})\nCtrl-C stops every component.",
            flush=True,
        )
        try:
            while all(p.poll() is None for p in procs):
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    print("stopped every Airflow component")
    return 0


SCHEDULER = ["scheduler", "--skip-serve-logs"]
DAG_PROCESSOR = ["dag-processor"]
TRIGGERER = ["triggerer", "--skip-serve-logs"]
API_SERVER = ["api-server", "--host", "127.0.0.1", "--workers", "1"]


@contextlib.contextmanager
def airflow_components(
    env: dict[str, str], commands: list[list[str]] | None = None
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start what ``airflow standalone`` starts, bound to loopback; stop it after.

    The scheduler and triggerer run with ``--skip-serve-logs``: Airflow's log
    server listens on every interface and cannot be bound to 127.0.0.1, and on
    one machine the API server reads task logs from the files directly.
    """
    airflow = str(Path(sys.executable).with_name("airflow"))
    port = env["AIRFLOW__API__PORT"]
    commands = commands or [SCHEDULER, DAG_PROCESSOR, TRIGGERER, API_SERVER]
    commands = [[*c, "--port", port] if c[0] == "api-server" else c for c in commands]
    logs = Path(env["AIRFLOW_HOME"]) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for command in commands:
            out = (logs / f"{command[0]}.out").open("wb")
            procs.append(
                subprocess.Popen(
                    [airflow, *command],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        yield procs
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in procs:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def main() -> None:
    """Entry point of ``python -m i2es_hub.demo [up]``."""
    parser = argparse.ArgumentParser(prog="python -m i2es_hub.demo")
    parser.add_argument("command", nargs="?", default="cycle", choices=["cycle", "up"])
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.command == "up":
        sys.exit(up(args.work or WORK / "up", args.port))
    sys.exit(demo(args.work or WORK))


if __name__ == "__main__":
    main()
