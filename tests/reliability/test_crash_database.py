"""The database connection cut mid-batch (PostgreSQL), then the ingest run again.

From a second connection the test waits until the ingest's backend is inside a
write transaction, with a random number of documents already committed, and
ends that backend with ``pg_terminate_backend``, as a failover or a network cut
would. The half-written batch must vanish with its transaction; running the
ingest again must store every document exactly once.
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import psycopg
import pytest

from i2es_hub import db, store
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
)

TRIALS = setting("DB_TRIALS", 3, 20)
DOCUMENTS = setting("DB_DOCUMENTS", 2000, 10000)
APP = "i2es-reliability-ingest"


def _terminate_in_transaction(admin: psycopg.Connection, app: str) -> int:
    """End the ingest's backends that are inside a transaction; return how many."""
    rows = admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = %s AND xact_start IS NOT NULL "
        "AND state <> 'idle'",
        (app,),
    ).fetchall()
    return sum(1 for (ok,) in rows if ok)


@pytest.mark.postgres
def test_connection_terminated_mid_batch_loses_and_doubles_nothing(
    pg_url: str, tmp_path: Path, seed: int
) -> None:
    engine = store.get_engine(pg_url)
    db.upgrade(engine)
    url = f"{pg_url}?application_name={APP}"
    env = dict(os.environ, I2ES_HUB_DATABASE_URL=url)
    admin_url = pg_url.replace("+psycopg", "")
    totals = {"trials": 0, "documents": 0, "terminated": 0, "losses": 0}
    with psycopg.connect(admin_url, autocommit=True) as admin:
        for trial in range(TRIALS):
            rng = random.Random(seed + trial)
            prefix = f"P{seed % 1000:03d}{trial:02d}"
            paths = write_batches(tmp_path / prefix, DOCUMENTS, 500, prefix)
            argv = hub_command(
                [
                    "ingest",
                    "--from",
                    "KE",
                    *(str(p.relative_to(tmp_path)) for p in paths),
                ]
            )
            base = count_documents(engine)
            target = base + rng.randrange(0, DOCUMENTS, 500)
            log_path = tmp_path / f"{prefix}.log"
            terminated = 0

            with child(argv, env, tmp_path, log_path) as process:

                def cut(
                    process: subprocess.Popen[bytes] = process, goal: int = target
                ) -> bool:
                    nonlocal terminated
                    if process.poll() is not None:
                        return True
                    if count_documents(engine) < goal:
                        return False
                    terminated = _terminate_in_transaction(admin, APP)
                    return terminated > 0

                wait_until(cut, 180, f"trial {trial}: ingest inside a transaction")
                process.wait(timeout=120)
            output = log_path.read_text(errors="replace")
            if terminated:
                assert process.returncode != 0, output
            at_cut = count_documents(engine) - base
            assert at_cut % 500 == 0, at_cut

            with child(argv, env, tmp_path, log_path) as again:
                assert again.wait(timeout=600) == 0, log_path.read_text()

            counts = census(engine)
            expected = {number_of(i, prefix=prefix) for i in range(DOCUMENTS)}
            losses = len(expected - stored_numbers(engine))
            assert losses == 0
            assert counts.documents == base + DOCUMENTS
            assert counts.duplicates == 0, counts
            report(
                "db-connection-terminated",
                trial=trial,
                seed=seed + trial,
                cut_after=f"{at_cut} stored",
                terminated=terminated,
                documents=DOCUMENTS,
                losses=losses,
                duplicates=counts.duplicates,
            )
            totals["trials"] += 1
            totals["documents"] += DOCUMENTS
            totals["terminated"] += int(terminated > 0)
    report(
        "db-connection-terminated total", **totals, duplicates=census(engine).duplicates
    )
