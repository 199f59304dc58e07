"""A batch's work in the database does not grow with the history already stored.

Counted in SQLite virtual-machine steps through a progress handler, not in seconds:
the count is the same on a loaded machine as on an idle one. A query that scans
every stored document of a kind (instead of looking up the few it needs) shows up
as a count that grows with the history.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event

from i2es_hub import db, store
from i2es_hub.ingest import Pipeline
from i2es_hub.submissions import Submission
from tests.helpers import edit

BATCH = 20
STEP = 100  # the handler runs once per this many virtual-machine instructions


def _import_authorizations(example: dict[str, bytes], start: int, count: int):
    for i in range(start, start + count):
        number = {"c:DocumentNumber": f"KE-IA-H-{i:06d}"}
        data = edit(example["import-authorization"], **number)
        yield Submission(data, "KE", "test", f"ia-{i}.xml")


def test_a_batch_costs_the_same_after_five_thousand_documents(
    tmp_path: Path, example: dict[str, bytes]
):
    engine = store.get_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0  # go on

    @event.listens_for(engine, "connect")
    def _count_steps(dbapi_connection, _record) -> None:
        dbapi_connection.set_progress_handler(count, STEP)

    db.upgrade(engine)
    pipeline = Pipeline(engine, batch_size=500)

    def batch_cost(start: int) -> int:
        candidates = [
            c
            for s in _import_authorizations(example, start, BATCH)
            for c in pipeline.prepare(s)
        ]
        before = steps[0]
        results = list(pipeline.commit_all(candidates))
        assert {r.outcome for r in results} == {"accepted"}
        return steps[0] - before

    list(pipeline.ingest(_import_authorizations(example, 0, 100)))
    short_history = batch_cost(100)
    list(pipeline.ingest(_import_authorizations(example, 1000, 5000)))
    long_history = batch_cost(200)

    ratio = long_history / short_history
    print(
        f"batch of {BATCH}: {short_history * STEP} steps after 120 documents, "
        f"{long_history * STEP} after 5,120 (ratio {ratio:.2f})"
    )
    assert ratio < 1.3, (short_history, long_history)
