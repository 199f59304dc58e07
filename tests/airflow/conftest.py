"""An Airflow home in a temporary folder, migrated once per session.

Airflow reads its settings when first imported, so the environment is set here,
before any test module imports it, and every test in this folder shares one
migrated SQLite metadata database.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from i2es_hub import orchestration

ROOT = Path(__file__).resolve().parents[2]
_HOME = Path(tempfile.mkdtemp(prefix="i2es-airflow-test-"))
_DAGS = _HOME / "dags"
shutil.copytree(ROOT / "dags", _DAGS, ignore=shutil.ignore_patterns("connectors"))
os.environ.update(orchestration.airflow_env(_HOME / "home", dags_folder=_DAGS))


@pytest.fixture(scope="session")
def airflow_home() -> Iterator[Path]:
    """The migrated Airflow home; removed at the end of the session."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True)
    yield _HOME / "home"
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def dags_folder() -> Path:
    """The session's copy of dags/ (the generated modules are written there)."""
    return _DAGS
