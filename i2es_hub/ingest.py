"""The ingest pipeline: bytes in, checked documents stored and routed.

Every channel feeds :class:`Pipeline`. It works in two stages:

1. *Prepare* (no database, :mod:`i2es_hub.prepare`, in a prepare process of its
   own for many files or a large batch file): safe parse, canonical schema
   validation, reading the model, the rules that need only the document and the
   reference data.
2. *Commit* (one write transaction per batch, :mod:`i2es_hub.writer`): identity
   lookup (duplicate or amendment), the rules that compare with stored documents,
   the estimate ledger, then the document, its version, lines, audit trail, alerts
   and one outbox row per recipient, all written together. Rejected input goes to
   quarantine with its original bytes in the same transaction.

Nothing is acknowledged to a sender before its batch has committed; the results
this module yields come after the commit.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from i2es_hub import store
from i2es_hub.policy import Policy
from i2es_hub.prepare import (
    GC_THRESHOLD,
    PrepareProcess,
    Preparer,
    checked_sizes,
    collect_rarely,
    worth_parallel,
)
from i2es_hub.reference import reference_lists
from i2es_hub.submissions import Candidate, Result, Submission
from i2es_hub.writer import BatchWriter

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500


@contextmanager
def bulk_collection() -> Iterator[None]:
    """Let the cycle collector run less often while many documents go through.

    Each document makes a few hundred short-lived container objects, and at the
    default threshold the collector runs every 700 allocations, rescanning the
    batch in flight each time: a fifth of the commit stage's time. Everything
    alive on entry (modules, schemas, the engine) is frozen out of the scans, and
    both settings are restored when the last of overlapping bulk runs (threads of
    the API) ends.
    """
    global _bulk_runs, _saved_threshold
    with _bulk_lock:
        if _bulk_runs == 0:
            _saved_threshold = gc.get_threshold()
            collect_rarely()
        _bulk_runs += 1
    try:
        yield
    finally:
        with _bulk_lock:
            _bulk_runs -= 1
            if _bulk_runs == 0:
                gc.set_threshold(*_saved_threshold)
                gc.unfreeze()


_bulk_lock = threading.Lock()
_bulk_runs = 0
_saved_threshold = gc.get_threshold()


class Pipeline:
    """Ingest submissions into the store, in batches.

    Args:
        engine: The hub database.
        batch_size: Documents per write transaction.
        policy: Per-country policy (warnings to hold).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        policy: Policy | None = None,
    ) -> None:
        self.engine = engine
        self.batch_size = batch_size
        self.policy = policy or Policy()
        with store.read_transaction(engine) as conn:
            self.references = reference_lists(conn)
        self.preparer = Preparer(self.references)
        self.prepare = self.preparer.prepare
        self.prepare_path = self.preparer.prepare_path

    def prepare_paths(
        self,
        paths: Sequence[Path | str],
        sender: str,
        channel: str = "cli",
        sizes: Sequence[int] | None = None,
        preparing: PrepareProcess | None = None,
    ) -> Iterator[Candidate]:
        """Prepare many files in input order, in a prepare process when it pays.

        The prepare process reads the files (and streams large batch files)
        itself. The commit stage stays in this process and in order, so a
        document that depends on an earlier one (an export authorization after
        its import authorization) always sees it.

        Args:
            paths: The files, in the order their documents are committed.
            sender: The sending country.
            channel: The channel recorded in the audit trail.
            sizes: Each file's size, when the caller has them already.
            preparing: A prepare process already started for these files, before
                the reference lists were read (the command line starts it early);
                it gets the lists now.
        """
        if preparing is None:
            if sizes is None:
                sizes = checked_sizes(paths)
            if not worth_parallel(sizes):
                for path in paths:
                    yield from self.prepare_path(path, sender, channel)
                return
            preparing = PrepareProcess(paths, sizes, sender, channel, self.references)
        else:
            preparing.send_references(self.references)
        database = store.sqlite_file(self.engine)
        if database is not None:
            preparing.fold_log(database)
        check = self.preparer.check
        with preparing:
            for candidate in preparing.candidates():
                if not candidate.checked:  # prepared before the lists arrived
                    check(candidate)
                yield candidate

    def ingest(self, submissions: Iterable[Submission]) -> Iterator[Result]:
        """Ingest every submission; yields one result per document, after commit."""
        return self.commit_all(c for s in submissions for c in self.prepare(s))

    def commit_all(self, candidates: Iterable[Candidate]) -> Iterator[Result]:
        """Commit prepared candidates in batches; yields results after each commit."""
        for results in self.commit_batches(candidates):
            yield from results

    def commit_batches(self, candidates: Iterable[Candidate]) -> Iterator[list[Result]]:
        """Commit prepared candidates in batches; yields each batch's results."""
        batch: list[Candidate] = []
        with bulk_collection():
            for candidate in candidates:
                batch.append(candidate)
                if len(batch) >= self.batch_size:
                    yield self._commit(batch)
                    batch = []
            if batch:
                yield self._commit(batch)

    def _commit(self, batch: list[Candidate]) -> list[Result]:
        for attempt in (1, 2, 3):
            try:
                with store.write_transaction(self.engine) as conn:
                    results = BatchWriter(conn, self, batch).run()
                break
            except IntegrityError:
                # Another worker stored one of these identities first: run the batch
                # again, and it will see them (duplicate or amendment).
                if attempt == 3:
                    raise
                log.warning(
                    "batch of %d conflicted with a concurrent ingest; "
                    "retrying (attempt %d)",
                    len(batch),
                    attempt + 1,
                )
        counts: dict[str, int] = defaultdict(int)
        for r in results:
            counts[r.outcome] += 1
        log.info(
            "ingested %d documents: %s",
            len(batch),
            ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
        )
        return results


__all__ = [
    "GC_THRESHOLD",
    "Candidate",
    "Pipeline",
    "Preparer",
    "Result",
    "Submission",
]
