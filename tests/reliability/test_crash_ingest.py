"""Ingest killed with SIGKILL at random points, then run again: nothing lost or doubled.

Each trial writes fresh import authorizations (batch files or one file each),
starts the real ``i2es-hub ingest`` in its own process group, waits until a
randomly chosen number of documents is committed, waits a further random
moment (so the kill lands inside a batch as often as between batches) and kills
the whole group with SIGKILL. At that point only whole batches may be stored.
Then the same command runs again to the end, and every document must be stored
exactly once, with exactly one delivery to its recipient.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import Engine

from i2es_hub import store
from i2es_hub.ingest import DEFAULT_BATCH_SIZE
from tests.reliability.support import (
    census,
    child,
    count_documents,
    hub_command,
    number_of,
    report,
    setting,
    stored_numbers,
    wait_until,
    write_batches,
    write_singles,
)

TRIALS = setting("CRASH_TRIALS", 3, 20)
DOCUMENTS = setting("CRASH_DOCUMENTS", 2000, 10000)


def _ingest_argv(paths: list[Path], cwd: Path) -> list[str]:
    return hub_command(
        ["ingest", "--from", "KE", *(str(p.relative_to(cwd)) for p in paths)]
    )


def _stored_or_ended(
    engine: Engine, process: subprocess.Popen[bytes], goal: int
) -> Callable[[], bool]:
    return lambda: process.poll() is not None or count_documents(engine) >= goal


def test_ingest_killed_at_random_points_loses_and_doubles_nothing(
    db_url: str, tmp_path: Path, seed: int
) -> None:
    engine = store.get_engine(db_url)
    env = dict(os.environ, I2ES_HUB_DATABASE_URL=db_url)
    totals = {"trials": 0, "documents": 0, "killed_mid_run": 0, "losses": 0}
    for trial in range(TRIALS):
        rng = random.Random(seed + trial)
        shape = rng.choice(["batch files", "one file each"])
        prefix = f"T{trial:02d}"
        folder = tmp_path / prefix
        if shape == "batch files":
            paths = write_batches(
                folder, DOCUMENTS, rng.choice([250, 1000, 2500]), prefix
            )
        else:
            paths = write_singles(folder, DOCUMENTS, prefix)
        base = count_documents(engine)
        target = rng.randint(0, DOCUMENTS)
        linger = rng.uniform(0, 0.3)

        argv = _ingest_argv(paths, tmp_path)
        with child(argv, env, tmp_path, tmp_path / "ingest.log") as process:
            wait_until(
                _stored_or_ended(engine, process, base + target),
                180,
                f"trial {trial}: {target} documents stored",
            )
            time.sleep(linger)
            alive = process.poll() is None
        at_kill = count_documents(engine) - base
        # Only whole batches are ever visible: a kill cannot leave half of one.
        assert at_kill % DEFAULT_BATCH_SIZE == 0 or at_kill == DOCUMENTS, at_kill

        with child(argv, env, tmp_path, tmp_path / "ingest.log") as process:
            assert process.wait(timeout=600) == 0, (tmp_path / "ingest.log").read_text()

        counts = census(engine)
        expected = {number_of(i, prefix=prefix) for i in range(DOCUMENTS)}
        stored = stored_numbers(engine)
        losses = len(expected - stored)
        assert losses == 0
        assert counts.documents == base + DOCUMENTS
        assert counts.duplicates == 0, counts
        assert counts.deliveries == counts.documents  # one to the exporter each
        report(
            "ingest-sigkill",
            trial=trial,
            seed=seed + trial,
            shape=shape,
            killed_after=f"{at_kill} stored" + ("" if alive else " (run had ended)"),
            documents=DOCUMENTS,
            losses=losses,
            duplicates=counts.duplicates,
        )
        totals["trials"] += 1
        totals["documents"] += DOCUMENTS
        totals["killed_mid_run"] += int(alive)
    report(
        f"ingest-sigkill total on {engine.dialect.name}",
        **totals,
        duplicates=census(engine).duplicates,
    )
