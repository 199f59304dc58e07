"""Several ingest processes against one small balance never over-consume it.

Real processes, each running the CLI, push import authorizations at once against
a 1,000 g estimate. Each document is 100 g of base, so exactly ten can pass
unflagged, whatever the interleaving; without the balance lock two workers would
read the same balance and both pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import EXAMPLES, set_estimates
from tests.helpers import edit

WORKERS = 4
DOCS_PER_WORKER = 15


def test_parallel_ingest_never_lets_unflagged_documents_exceed_the_balance(
    engine, db_url, tmp_path: Path
):
    set_estimates(
        engine,
        "country,substance,year,kind,grams,confirmed_on\n"
        "KE,morphine,2026,estimate,1000,2025-11-01\n",
    )
    template = (EXAMPLES / "import-authorization.xml").read_bytes()
    folders = []
    for w in range(WORKERS):
        folder = tmp_path / f"w{w}"
        folder.mkdir()
        for i in range(DOCS_PER_WORKER):
            (folder / f"{i:03d}.xml").write_bytes(
                edit(
                    template,
                    **{
                        "c:DocumentNumber": f"KE-IA-C{w}-{i:03d}",
                        "c:Lines/c:Line/c:Form": "morphine",
                        "c:Lines/c:Line/c:Quantity": "100",
                    },
                )
            )
        folders.append(folder)

    env = dict(os.environ, I2ES_HUB_DATABASE_URL=db_url)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "i2es_hub.cli",
                "ingest",
                "--json",
                "--batch-size",
                "1",
                "--from",
                "KE",
                *sorted(str(p) for p in folder.iterdir()),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for folder in folders
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]

    results = [json.loads(line) for out, _ in outputs for line in out.splitlines()]
    assert len(results) == WORKERS * DOCS_PER_WORKER
    unflagged = [
        r
        for r in results
        if not any(f["code"] == "EXCESS_ESTIMATE" for f in r["findings"])
    ]
    print(
        f"{len(results)} documents from {WORKERS} processes; "
        f"{len(unflagged)} passed unflagged against room for 10"
    )
    assert len(unflagged) == 10
