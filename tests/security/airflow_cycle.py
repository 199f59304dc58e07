"""Run connector DAGs with ``dag.test()``: the Airflow leg of test_secrets.

Run as a subprocess so that Airflow reads a temporary home from the environment
the test prepared (``AIRFLOW_HOME``, ``AIRFLOW_CONN_*``) and nothing else::

    python tests/security/airflow_cycle.py DAGS_FOLDER ke-ppb de-bfarm ...
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    dags, names = Path(argv[0]), argv[1:]
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True)
    logging.basicConfig(level=logging.DEBUG)

    from i2es_hub import demo

    runner = demo.Runner(dags)
    for name in names:
        runner.run_connector(name)
    for dag_id, state in runner.states:
        print(f"{dag_id}: {state}")
    return 0 if all("success" in state for _, state in runner.states) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
