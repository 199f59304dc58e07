"""Cost of the estimate check with an empty ledger and with a million prior entries.

Two SQLite databases, migrated alike; the second is first filled with 1,000,000
holdings (``BENCH_LEDGER_ENTRIES``) spread over 10,000 balance keys with their
estimates. The same import authorizations are prepared once, then in alternating
rounds (to even out noise on a shared machine; the best round counts):

- the check itself: lock and read the balances, plan each document's effect
  against them and apply it in memory, then roll back;
- the whole commit stage (check, ledger effect, store, route), for context: its
  inserts go into larger indexes in the database with history.

ratio = time per document with history / with an empty ledger.
"""

from __future__ import annotations

import os
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from bench.common import figure, variants, write
from i2es_hub import db, store
from i2es_hub.estimates import load_estimates, parse_estimates
from i2es_hub.ingest import Pipeline, Submission
from i2es_hub.writer import BatchWriter

ENTRIES = int(os.environ.get("BENCH_LEDGER_ENTRIES", "1000000"))
DOCS = int(os.environ.get("BENCH_LEDGER_DOCS", "2000"))
ROUNDS = 3


def _database(path: Path, history: int) -> str:
    url = f"sqlite:///{path}"
    engine = store.get_engine(url)
    db.upgrade(engine)
    with store.write_transaction(engine) as conn:
        load_estimates(
            conn,
            parse_estimates(
                "country,substance,year,kind,grams,confirmed_on\n"
                "KE,morphine,2026,estimate,1000000000,2025-11-01\n",
                "bench",
            ),
            "bench",
        )
    if history:
        _fill(engine, history)
    with engine.connect() as conn:
        # start both from a checkpointed file, not a WAL full of the history
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.exec_driver_sql("ANALYZE")
    return url


def _fill(engine, history: int) -> None:
    keys = [
        (
            f"{chr(65 + i // 26 % 26)}{chr(65 + i % 26)}",
            f"substance-{i % 40}",
            2000 + i % 25,
        )
        for i in range(10_000)
    ]
    now = store.utcnow()
    with store.write_transaction(engine) as conn:
        conn.execute(
            store.balances.insert(),
            [
                {
                    "country": c,
                    "substance": s,
                    "year": y,
                    "reserved": Decimal(100),
                    "consumed": Decimal(50),
                    "updated_at": now,
                }
                for c, s, y in keys
            ],
        )
        conn.execute(
            store.estimates.insert(),
            [
                {
                    "country": c,
                    "substance": s,
                    "kind": "estimate",
                    "year": y,
                    "grams": Decimal(10_000),
                    "confirmed_on": now.date(),
                    "source": "bench",
                    "loaded_at": now,
                }
                for c, s, y in keys
            ],
        )
        for start in range(0, history, 50_000):
            conn.execute(
                store.holdings.insert(),
                [
                    {
                        "id": store.new_id(),
                        "document_id": store.new_id(),
                        "substance": keys[i % len(keys)][1],
                        "kind": "import-authorization",
                        "country": keys[i % len(keys)][0],
                        "year": keys[i % len(keys)][2],
                        "quantity": Decimal(10),
                        "reserved": Decimal(10),
                        "drawn": Decimal(0),
                        "ia_holding_id": None,
                        "consumed": Decimal(0),
                        "consumed_year": None,
                        "open": True,
                    }
                    for i in range(start, min(start + 50_000, history))
                ],
            )


def _round(url: str, docs: list[bytes], tag: str) -> float:
    """Seconds per document to commit ``docs`` (renamed per round) into ``url``."""
    pipeline = Pipeline(store.get_engine(url), batch_size=500)
    subs = [
        Submission(d.replace(b"BENCH-", f"{tag}-".encode()), "KE", "bench")
        for d in docs
    ]
    candidates = [c for s in subs for c in pipeline.prepare(s)]
    start = time.perf_counter()
    results = list(pipeline.commit_all(candidates))
    elapsed = time.perf_counter() - start
    assert all(r.outcome == "accepted" for r in results), results[0]
    return elapsed / len(docs)


def _check_round(url: str, docs: list[bytes], tag: str) -> float:
    """Seconds per document for the ledger check alone, rolled back afterwards."""
    engine = store.get_engine(url)
    pipeline = Pipeline(engine, batch_size=500)
    subs = [
        Submission(d.replace(b"BENCH-", f"{tag}-".encode()), "KE", "bench")
        for d in docs
    ]
    candidates = [c for s in subs for c in pipeline.prepare(s)]
    with engine.connect() as conn:
        conn.info["i2es_write"] = True
        transaction = conn.begin()
        try:
            writer = BatchWriter(conn, pipeline, candidates)
            writer.load_identities()
            start = time.perf_counter()
            batch = [c.doc for c in candidates if c.doc is not None]
            writer.ledger.prepare(batch, writer.ledger_documents(batch))
            for c in candidates:
                assert c.doc is not None
                plan = writer.ledger_plan(c.doc, store.new_id(), c.bases, None)
                writer.ledger.execute(plan)
            elapsed = time.perf_counter() - start
        finally:
            transaction.rollback()
            conn.info.pop("i2es_write", None)
    return elapsed / len(docs)


def main() -> None:
    docs = variants(DOCS)
    with tempfile.TemporaryDirectory(prefix="i2es-ledger-") as tmp:
        t0 = time.perf_counter()
        empty = _database(Path(tmp) / "empty.db", 0)
        large = _database(Path(tmp) / "large.db", ENTRIES)
        print(
            f"built databases ({ENTRIES:,} prior ledger entries) in "
            f"{time.perf_counter() - t0:.1f} s"
        )
        empty_times, large_times = [], []
        empty_checks, large_checks = [], []
        for r in range(ROUNDS):
            empty_checks.append(_check_round(empty, docs, f"CE{r}"))
            large_checks.append(_check_round(large, docs, f"CL{r}"))
            empty_times.append(_round(empty, docs, f"E{r}"))
            large_times.append(_round(large, docs, f"L{r}"))
    e_ms = min(empty_times) * 1000
    l_ms = min(large_times) * 1000
    ce_ms = min(empty_checks) * 1000
    cl_ms = min(large_checks) * 1000
    write(
        "ledger",
        [
            figure(
                f"estimate check per document, {ENTRIES:,} prior ledger entries",
                cl_ms,
                "ms/doc",
                "same with an empty ledger",
                ce_ms,
            ),
            figure(
                f"whole commit stage per document, {ENTRIES:,} prior entries",
                l_ms,
                "ms/doc",
                "same with an empty ledger",
                e_ms,
            ),
        ],
    )


if __name__ == "__main__":
    main()
