"""Every connector file yields its DAG; a broken one yields one import error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

from i2es_hub import orchestration

ROOT = Path(__file__).resolve().parents[2]
HOUSEKEEPING = {
    "hub_alerts",
    "hub_estimates_refresh",
    "hub_expiry_sweep",
    "hub_redelivery",
}


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    dags = tmp_path / "dags"
    shutil.copytree(ROOT / "dags", dags, ignore=shutil.ignore_patterns("connectors"))
    connectors = tmp_path / "connectors"
    shutil.copytree(ROOT / "connectors", connectors)
    monkeypatch.setenv("I2ES_HUB_CONNECTORS_DIR", str(connectors))
    return dags, connectors


def test_every_connector_file_yields_its_dag(setup: tuple[Path, Path]) -> None:
    dags, connectors = setup
    files = sorted(connectors.glob("*.yaml"))
    assert len(files) >= 3

    first = DagBag(str(dags))  # generates the modules, builds the DAGs meanwhile
    second = DagBag(str(dags))  # then every connector has its own module

    for bag in (first, second):
        assert bag.import_errors == {}
        expected = {orchestration.dag_id_for(p) for p in files} | HOUSEKEEPING
        assert set(bag.dag_ids) == expected
    for path in files:
        dag = second.dags[orchestration.dag_id_for(path)]
        assert Path(dag.fileloc).name == f"{orchestration.dag_id_for(path)}.py"
        assert any(t.startswith("country:") for t in dag.tags)
        assert any(t.startswith("transport:") for t in dag.tags)
        assert {t.task_id for t in dag.tasks} == {
            "pull",
            "ingest",
            "archive",
            "announce_alerts",
            "push",
        }
        assert dag.task_dict["pull"].retries >= 1
        assert dag.task_dict["ingest"].execution_timeout is not None


def test_adding_a_file_adds_a_dag(setup: tuple[Path, Path]) -> None:
    dags, connectors = setup
    DagBag(str(dags))
    shutil.copy(connectors / "ke-ppb.yaml", connectors / "ke-ppb-backup.yaml")

    bag = DagBag(str(dags))

    assert "connector_ke-ppb-backup" in bag.dag_ids
    assert bag.import_errors == {}


def test_a_broken_connector_file_breaks_only_its_own_dag(
    setup: tuple[Path, Path],
) -> None:
    dags, connectors = setup
    (connectors / "zz-broken.yaml").write_text("country: Kenya\ntransport: {}\n")
    DagBag(str(dags))  # the factory writes the broken file's module

    bag = DagBag(str(dags))

    assert len(bag.import_errors) == 1
    (path, error) = next(iter(bag.import_errors.items()))
    assert path.endswith("connector_zz-broken.py")
    assert "zz-broken.yaml" in error
    good = {orchestration.dag_id_for(p) for p in connectors.glob("*.yaml")}
    good.discard("connector_zz-broken")
    assert good <= set(bag.dag_ids)


def test_no_secret_in_dag_or_connector_files() -> None:
    words = ("password", "private_key", "token:", "BEGIN OPENSSH")
    for path in [
        *ROOT.joinpath("dags").glob("*.py"),
        *ROOT.joinpath("connectors").glob("*"),
    ]:
        text = path.read_text().lower()
        assert not any(w.lower() in text for w in words if w != "token:"), path
