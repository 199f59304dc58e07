"""Shared pieces of the reliability tests: documents in volume, counts, processes.

The crash tests run the real ``i2es-hub`` command in a child process and kill it;
everything here is about making that honest and leaving nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from i2es_hub import store
from i2es_hub.connectors import Connector, connectors_dir, load_connector
from i2es_hub.ingest import Pipeline, Submission

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_IA = (ROOT / "examples" / "import-authorization.xml").read_text("utf-8")
NS = "urn:i2es-hub:canonical:1"

#: Set to ``long`` by ``make reliability``: more trials, more documents.
LONG = os.environ.get("I2ES_HUB_RELIABILITY", "") == "long"


def setting(name: str, default: int, long: int) -> int:
    """An integer knob: ``I2ES_HUB_<NAME>`` wins, else the long or short default."""
    value = os.environ.get(f"I2ES_HUB_{name}")
    return int(value) if value else (long if LONG else default)


def import_authorization(
    number: int, country: str = "KE", prefix: str = "", exporter: str = "DE"
) -> str:
    """The example import authorization, re-numbered (no XML declaration).

    Issued and imported by ``country``, exported from ``exporter``: the hub
    routes it to ``exporter``.
    """
    body = EXAMPLE_IA.split("?>", 1)[1].strip()
    body = body.replace("KE-IA-2026-00042", number_of(number, country, prefix))
    body = body.replace(">1000</Quantity>", f">{1 + number % 97}</Quantity>")
    body = body.replace(
        "<IssuingCountry>KE</IssuingCountry>",
        f"<IssuingCountry>{country}</IssuingCountry>",
    )
    # The exporter first: the importer's country may be the same code.
    body = body.replace("<Country>DE</Country>", f"<Country>{exporter}</Country>")
    return body.replace(
        "<PostalCode>00200</PostalCode>\n      <Country>KE</Country>",
        f"<PostalCode>00200</PostalCode>\n      <Country>{country}</Country>",
    )


def number_of(index: int, country: str = "KE", prefix: str = "") -> str:
    """The document number `import_authorization` gives to ``index``."""
    return f"{country}-IA-2026-{prefix}{index:06d}"


def write_batches(
    folder: Path, count: int, per_file: int, prefix: str = ""
) -> list[Path]:
    """Write ``count`` import authorizations as canonical Batch files."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for first in range(0, count, per_file):
        docs = "\n".join(
            import_authorization(i, prefix=prefix)
            for i in range(first, min(first + per_file, count))
        )
        path = folder / f"batch-{first:06d}.xml"
        path.write_text(
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Batch xmlns="{NS}">\n'
            f"{docs}\n</Batch>\n",
            encoding="utf-8",
        )
        paths.append(path)
    return paths


def write_singles(folder: Path, count: int, prefix: str = "") -> list[Path]:
    """Write ``count`` import authorizations, one file each."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"ia-{i:06d}.xml"
        path.write_text(
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            + import_authorization(i, prefix=prefix),
            encoding="utf-8",
        )
        paths.append(path)
    return paths


@dataclass(frozen=True)
class Census:
    """What the database holds, counted by identity."""

    documents: int
    identities: int
    versions: int
    doubled_versions: int
    deliveries: int
    doubled_deliveries: int
    quarantined: int

    @property
    def duplicates(self) -> int:
        """Rows that would mean one document or one delivery stored twice."""
        return (
            (self.documents - self.identities)
            + (self.versions - self.documents)
            + self.doubled_versions
            + self.doubled_deliveries
        )


def census(engine: Engine) -> Census:
    """Count documents, versions and deliveries, and anything doubled."""
    d, v, dl = store.documents, store.document_versions, store.deliveries
    with store.read_transaction(engine) as conn:

        def scalar(query: object) -> int:
            return int(conn.execute(query).scalar_one())  # type: ignore[call-overload]

        identities = select(d.c.issuer, d.c.doc_type, d.c.number).distinct().subquery()
        doubled_v = (
            select(v.c.document_id, v.c.version)
            .group_by(v.c.document_id, v.c.version)
            .having(func.count() > 1)
            .subquery()
        )
        doubled_dl = (
            select(dl.c.document_id, dl.c.version, dl.c.recipient, dl.c.kind)
            .where(dl.c.document_id.is_not(None))
            .group_by(dl.c.document_id, dl.c.version, dl.c.recipient, dl.c.kind)
            .having(func.count() > 1)
            .subquery()
        )
        return Census(
            documents=scalar(select(func.count()).select_from(d)),
            identities=scalar(select(func.count()).select_from(identities)),
            versions=scalar(select(func.count()).select_from(v)),
            doubled_versions=scalar(select(func.count()).select_from(doubled_v)),
            deliveries=scalar(select(func.count()).select_from(dl)),
            doubled_deliveries=scalar(select(func.count()).select_from(doubled_dl)),
            quarantined=scalar(select(func.count()).select_from(store.quarantine)),
        )


def stored_numbers(engine: Engine) -> set[str]:
    """The numbers of every stored document."""
    d = store.documents
    with store.read_transaction(engine) as conn:
        return set(conn.execute(select(d.c.number)).scalars())


def count_documents(engine: Engine) -> int:
    """How many documents are stored (committed)."""
    with store.read_transaction(engine) as conn:
        return int(
            conn.execute(select(func.count()).select_from(store.documents)).scalar_one()
        )


def hub_command(args: Sequence[str]) -> list[str]:
    """The argv that runs the real ``i2es-hub`` command."""
    return [sys.executable, "-m", "i2es_hub.cli", *args]


@contextlib.contextmanager
def child(
    argv: Sequence[str], env: dict[str, str], cwd: Path, log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` in its own process group; kill the group when done.

    The group matters: ingest prepares documents on forked worker processes, and a
    SIGKILL of the parent alone would leave them waiting on a dead pipe.
    """
    with open(log_path, "ab") as out:
        process = subprocess.Popen(
            list(argv),
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        kill_group(process)


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group of ``process`` (it leads it) and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def wait_until(condition: object, timeout: float, what: str) -> None:
    """Poll ``condition()`` every 10 ms until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def report(scenario: str, **figures: object) -> str:
    """Print one line of figures for the run's log, and return it."""
    line = f"RELIABILITY {scenario}: " + ", ".join(
        f"{k} {v}" for k, v in figures.items()
    )
    print(line)
    log.info("%s", line)
    return line


def connector_for(name: str, workdir: Path, **transport: object) -> Connector:
    """The sample connector ``name`` with its transport settings overridden."""
    data = yaml.safe_load((connectors_dir() / f"{name}.yaml").read_text("utf-8"))
    data["transport"] = {**data["transport"], **transport}
    folder = workdir / "connectors"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_connector(path)


def ingest_addressed_to(
    engine: Engine, recipient: str, count: int, prefix: str, issuer: str = "KE"
) -> None:
    """Store ``count`` import authorizations addressed to their exporter."""
    pipeline = Pipeline(engine)
    submissions = (
        Submission(
            import_authorization(i, issuer, prefix, exporter=recipient).encode(),
            issuer,
            "reliability",
            f"{prefix}-{i}",
        )
        for i in range(count)
    )
    outcomes = {r.outcome for r in pipeline.ingest(submissions)}
    assert outcomes <= {"accepted", "held"}, outcomes


@contextlib.contextmanager
def rest_receiver(
    port: int,
    journal: Path,
    token: str,
    log_path: Path,
    tls: tuple[Path, Path] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `rest_receiver.py` on ``port`` until the context ends (or it is killed)."""
    argv = [
        sys.executable,
        str(Path(__file__).with_name("rest_receiver.py")),
        "--port",
        str(port),
        "--journal",
        str(journal),
        # one argument: a token may start with "-", which argparse would take
        # for an option
        f"--token={token}",
    ]
    if tls is not None:
        argv += ["--certfile", str(tls[0]), "--keyfile", str(tls[1])]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with child(argv, env, ROOT, log_path) as process:
        wait_until(
            lambda: _listening(port) or process.poll() is not None, 30, "receiver"
        )
        assert process.poll() is None, log_path.read_text()
        yield process


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def journal_keys(journal: Path) -> list[str]:
    """The message ids a journaling receiver took, in order, repeats included."""
    if not journal.exists():
        return []
    return [
        json.loads(line)["key"] for line in journal.read_text().splitlines() if line
    ]


def delivery_states(engine: Engine, recipient: str) -> dict[str, str]:
    """Delivery id -> state, for every delivery to ``recipient``."""
    dl = store.deliveries
    with store.read_transaction(engine) as conn:
        rows = conn.execute(
            select(dl.c.id, dl.c.state).where(dl.c.recipient == recipient)
        )
        return {row.id: row.state for row in rows}
