"""Ingest throughput and memory, against a bare lxml parse-and-validate loop.

Runs the real CLI (``i2es-hub ingest``) on a generated batch file of N documents
(default 100,000; ``BENCH_INGEST_DOCS`` to change) into a fresh SQLite database,
and, in the same run, a bare loop that only parses and validates the same
documents with lxml. Peak memory is measured for the same file at N and N/4
documents to show it does not grow with batch size.

The reference for memory is N/4, not smaller: SQLite's page cache (64 MiB, set in
``store``) fills as the database grows to about 20,000 documents and then stays
at that size. Below that, the cache filling up would read as growth.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, batch_file, figure, variants, write

N = int(os.environ.get("BENCH_INGEST_DOCS", "100000"))
REF = N // 4

BARE = r"""
import sys, time
from lxml import etree
sys.path.insert(0, sys.argv[2])
from i2es_hub.canonical import lxml_schema
schema = lxml_schema()
parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
docs = open(sys.argv[1], "rb").read().split(b"\x00")
start = time.perf_counter()
for data in docs:
    schema.assertValid(etree.fromstring(data, parser))
print(len(docs) / (time.perf_counter() - start))
"""


def hub_ingest(path: Path, workdir: Path) -> tuple[float, float]:
    """(documents per second, peak RSS in MiB) of one CLI ingest in a subprocess."""
    env = dict(os.environ, I2ES_HUB_DATABASE_URL=f"sqlite:///{workdir / 'hub.db'}")
    hub = [sys.executable, "-m", "i2es_hub.cli"]
    subprocess.run([*hub, "db", "upgrade"], env=env, check=True, capture_output=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    result = subprocess.run(
        [*hub, "ingest", "--from", "KE", str(path)],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"hub ingest failed: {result.stderr[-500:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return N_of(path) / elapsed, max(peak, before) / 1024


def N_of(path: Path) -> int:  # noqa: N802 - reads as the N of the docstring
    return int(path.stem.split("-")[-1])


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="i2es-bench-") as tmp:
        work = Path(tmp)
        small = batch_file(work / f"batch-{REF}", REF, "SMALL")
        large = batch_file(work / f"batch-{N}", N)
        joined = work / "docs.bin"
        joined.write_bytes(b"\x00".join(variants(N)))
        bare = subprocess.run(
            [sys.executable, "-c", BARE, str(joined), str(ROOT)],
            capture_output=True,
            text=True,
            check=True,
        )
        bare_rate = float(bare.stdout.strip())
        (work / "a").mkdir()
        (work / "b").mkdir()
        # a fresh process per run, so each peak RSS is its own
        small_rate, small_rss = _isolated(small, work / "a")
        rate, rss = _isolated(large, work / "b")
    print(f"{N} documents in one batch file")
    entries = [
        figure(
            f"hub ingest end to end ({N} docs, SQLite)",
            rate,
            "docs/s",
            "bare lxml parse+validate, same documents",
            bare_rate,
        ),
        figure(
            f"hub peak RSS at {N} docs",
            rss,
            "MiB",
            f"hub peak RSS at {REF} docs",
            small_rss,
        ),
        figure(
            f"hub ingest end to end ({REF} docs)",
            small_rate,
            "docs/s",
            "bare lxml parse+validate, same documents",
            bare_rate,
        ),
    ]
    write("ingest", entries)


def _isolated(path: Path, workdir: Path) -> tuple[float, float]:
    code = (
        "import sys, json; sys.path.insert(0, sys.argv[3]); "
        "from bench.ingest_bench import hub_ingest; from pathlib import Path; "
        "print(json.dumps(hub_ingest(Path(sys.argv[1]), Path(sys.argv[2]))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path), str(workdir), str(ROOT)],
        capture_output=True,
        text=True,
        check=True,
    )
    import json

    rate, rss = json.loads(out.stdout.strip().splitlines()[-1])
    return float(rate), float(rss)


if __name__ == "__main__":
    main()
