"""Pull killed with SIGKILL at random points: no remote file archived before its commit.

Each trial leaves national files in a country's inbox (Germany: batch files in
a drop folder; Kenya: one document per file on a real OpenSSH server), starts
the real ``i2es-hub pull`` and kills its process group at a random moment. At
the kill, every file already archived must have all its documents stored (store,
then acknowledge). Then pulls run until the inbox is empty: files that were
committed but not archived come back as duplicates, and every document ends up
stored exactly once.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from i2es_hub import store
from i2es_hub.errors import PermanentTransportError
from i2es_hub.exchange import pull
from i2es_hub.simulators.national import generate, national_system
from tests.reliability.support import (
    census,
    child,
    count_documents,
    hub_command,
    report,
    setting,
    stored_numbers,
    wait_until,
)

TRIALS = setting("PULL_TRIALS", 2, 20)
SHAPES = {
    # connector: (documents per trial, documents per file, inbox below workdir)
    "de-bfarm": (setting("PULL_DOCUMENTS_DE", 1000, 10000), 20, "drop/inbox"),
    "ke-ppb": (setting("PULL_DOCUMENTS_KE", 200, 1000), 1, "sftp/inbox"),
}


def _stored_or_ended(
    engine: Engine,
    process: subprocess.Popen[bytes],
    goal: int,
    deadline: float | None = None,
) -> Callable[[], bool]:
    def reached() -> bool:
        if process.poll() is not None:
            return True
        if deadline is not None:
            return time.monotonic() >= deadline
        return count_documents(engine) >= goal

    return reached


def _archived(inbox: Path) -> set[str]:
    """Original names of the archived files (a repeat gets a suffix)."""
    names = set()
    for path in (inbox / "archive").iterdir():
        name = path.name
        for ending in (".xml", ".json"):
            if ending in name:
                name = name[: name.index(ending) + len(ending)]
        names.add(name)
    return names


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_pull_killed_at_random_points_archives_only_what_is_committed(
    name: str, db_url: str, tmp_path: Path, seed: int
) -> None:
    engine = store.get_engine(db_url)
    count, per_file, inbox_below = SHAPES[name]
    workdir = tmp_path / "national"
    inbox = workdir / inbox_below
    totals = {"trials": 0, "documents": 0, "files": 0, "killed_mid_run": 0}
    with national_system(name, workdir) as system:
        env = dict(os.environ, I2ES_HUB_DATABASE_URL=db_url, **system.env)
        argv = hub_command(["pull", name, "--folder", str(workdir / "connectors")])
        for trial in range(TRIALS):
            rng = random.Random(seed + trial)
            start = 1 + trial * count
            files = generate(system.connector, count, start=start, per_file=per_file)
            numbers: dict[str, set[str]] = {}
            for index, (file_name, data) in enumerate(files):
                first = start + index * per_file
                numbers[file_name] = {
                    f"{system.connector.country}-IA-2026-{serial:06d}"
                    for serial in range(first, min(first + per_file, start + count))
                }
                system.send(file_name, data)
            base = count_documents(engine)
            # Half the kills wait for a stored count, half for a random moment.
            by_time = rng.random() < 0.5
            # Aim inside the first run: it takes ``batch_size`` files at most.
            first_run = min(count, system.connector.batch_size * per_file)
            target = base + (count + 1 if by_time else rng.randint(0, first_run))
            deadline = time.monotonic() + rng.uniform(0, 2.5)
            log_path = tmp_path / "pull.log"

            with child(argv, env, tmp_path, log_path) as process:
                wait_until(
                    _stored_or_ended(
                        engine, process, target, deadline if by_time else None
                    ),
                    180,
                    "documents stored",
                )
                time.sleep(rng.uniform(0, 0.3))
                alive = process.poll() is None
            # Store, then acknowledge: an archived file's documents are all stored.
            stored = stored_numbers(engine)
            archived = _archived(inbox) & set(numbers)
            for file_name in archived:
                assert numbers[file_name] <= stored, file_name
            at_kill = (count_documents(engine) - base, len(archived))

            for _ in range(2 * len(files)):
                pending = [p for p in inbox.iterdir() if p.is_file()]
                if not pending:
                    break
                with child(argv, env, tmp_path, log_path) as again:
                    assert again.wait(timeout=300) == 0, log_path.read_text()
            assert not [p for p in inbox.iterdir() if p.is_file()]

            expected = set().union(*numbers.values())
            losses = len(expected - stored_numbers(engine))
            counts = census(engine)
            assert losses == 0
            assert counts.documents == base + count
            assert counts.duplicates == 0, counts
            report(
                f"pull-sigkill {name}",
                trial=trial,
                seed=seed + trial,
                killed_after=f"{at_kill[0]} stored, {at_kill[1]} files archived"
                + ("" if alive else " (run had ended)"),
                files=len(files),
                documents=count,
                losses=losses,
                duplicates=counts.duplicates,
            )
            totals["trials"] += 1
            totals["documents"] += count
            totals["files"] += len(files)
            totals["killed_mid_run"] += int(alive)
    report(f"pull-sigkill {name} total", **totals, losses=0, duplicates=0)


def test_archive_failing_after_commit_leaves_files_for_a_duplicate_pull(
    engine: Engine, tmp_path: Path
) -> None:
    with national_system("de-bfarm", tmp_path / "national") as germany:
        for file_name, data in generate(germany.connector, 40, per_file=10):
            germany.send(file_name, data)
        archive = tmp_path / "national" / "drop" / "inbox" / "archive"
        archive.rmdir()  # the archive folder vanished: a real fault, after commit

        with pytest.raises(PermanentTransportError, match="archive"):
            pull(germany.connector, engine, connection=germany.connection)
        assert count_documents(engine) == 40
        inbox = archive.parent
        assert len([p for p in inbox.iterdir() if p.is_file()]) == 4

        archive.mkdir()
        again = pull(germany.connector, engine, connection=germany.connection)
    assert again.outcomes == {"duplicate": 40}
    assert again.archived == 4
    counts = census(engine)
    assert (counts.documents, counts.duplicates) == (40, 0)
    report("pull-archive-fails-after-commit", documents=40, duplicates=0, losses=0)
