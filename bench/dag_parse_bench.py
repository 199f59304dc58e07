"""DAG parse time: 200 generated connector files against the 3 sample ones.

Each case copies dags/ and a connectors folder into a temporary directory,
generates the per-connector modules, then times a full DagBag parse (the work the
DAG processor does on each refresh), best of three. The reference is the same
parse with the three sample connector files, measured in the same run.
Writes bench/results/dag-parse.json.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="i2es-bench-airflow-"))

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from airflow.dag_processing.dagbag import DagBag  # noqa: E402

from i2es_hub import orchestration  # noqa: E402

SAMPLES = sorted((ROOT / "connectors").glob("*.yaml"))
MANY = 200
ROUNDS = 3


def setup(work: Path, count: int) -> Path:
    """A dags/ copy and ``count`` connector files; returns the dags folder."""
    dags = work / "dags"
    shutil.copytree(ROOT / "dags", dags, ignore=shutil.ignore_patterns("connectors"))
    folder = work / "connectors"
    folder.mkdir()
    for i in range(count):
        source = SAMPLES[i % len(SAMPLES)]
        name = source.stem if count <= len(SAMPLES) else f"{source.stem}-{i:03d}"
        shutil.copy(source, folder / f"{name}.yaml")
    os.environ["I2ES_HUB_CONNECTORS_DIR"] = str(folder)
    orchestration.sync_connector_modules(dags)
    return dags


def parse(dags: Path, expected: int) -> float:
    """Seconds for one DagBag parse of ``dags``, best of ROUNDS."""
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        bag = DagBag(str(dags))
        best = min(best, time.perf_counter() - started)
        if bag.import_errors or len(bag.dags) != expected + 4:
            raise SystemExit(
                f"unexpected parse: {len(bag.dags)} dags, {bag.import_errors}"
            )
    return best


def main() -> None:
    results = {}
    for count in (len(SAMPLES), MANY):
        with tempfile.TemporaryDirectory(prefix="i2es-dag-parse-") as tmp:
            dags = setup(Path(tmp), count)
            if not results:
                parse(dags, count)  # warm the imports once
            results[count] = parse(dags, count)
    few, many = results[len(SAMPLES)], results[MANY]
    per_few, per_many = few / len(SAMPLES), many / MANY
    rows = [
        {
            "name": f"dag_parse_{MANY}_connectors",
            "value": round(many, 3),
            "unit": "s",
            "reference": f"dag_parse_{len(SAMPLES)}_connectors",
            "reference_value": round(few, 3),
            "ratio": round(many / few, 2),
        },
        {
            "name": "dag_parse_per_connector_at_200",
            "value": round(per_many * 1000, 2),
            "unit": "ms",
            "reference": "dag_parse_per_connector_at_3",
            "reference_value": round(per_few * 1000, 2),
            "ratio": round(per_many / per_few, 2),
        },
    ]
    out = ROOT / "bench" / "results" / "dag-parse.json"
    out.write_text(json.dumps(rows, indent=2) + "\n")
    for row in rows:
        print(
            f"{row['name']}: {row['value']} {row['unit']} vs {row['reference']}: "
            f"{row['reference_value']} {row['unit']} (ratio {row['ratio']})"
        )


if __name__ == "__main__":
    main()
