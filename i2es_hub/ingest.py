"""The ingest pipeline: bytes in, checked documents stored and routed.

Every channel feeds :class:`Pipeline`. It works in two stages:

1. *Prepare* (no database): safe parse, canonical schema validation, reading the
   model, the rules that need only the document and the reference data.
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
import itertools
import logging
import multiprocessing
import os
import threading
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lxml import etree
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from i2es_hub import canonical, store, xmlsafe
from i2es_hub.canonical import Document
from i2es_hub.findings import Code, Finding
from i2es_hub.policy import Policy
from i2es_hub.reference import ReferenceList, reference_for, reference_lists
from i2es_hub.rules import document_findings
from i2es_hub.submissions import Candidate, Result, Submission
from i2es_hub.writer import BatchWriter

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500
PREPARE_WORKERS = 3
PREPARE_CHUNK = 250
PREPARE_WINDOW = 4  # chunks in flight per worker: more than a batch's worth
PARALLEL_MIN_FILES = 1000
RAMP_START = 50  # documents in the first chunk and the first transaction


class Preparer:
    """The database-free first stage: parse, validate, read, document rules.

    Holds only the reference lists, so it can run in worker processes.
    """

    def __init__(self, references: list[ReferenceList]) -> None:
        self._references = references
        canonical.lxml_schema()  # compile once, before the first document

    def _reference(self, doc: Document) -> ReferenceList | None:
        return reference_for(self._references, doc.issue_date)

    def prepare(self, submission: Submission) -> Iterator[Candidate]:
        """Parse, validate and check one submission without touching the database."""
        data = submission.data
        try:
            root = xmlsafe.parse(data)
        except xmlsafe.UnsafeXML as exc:
            yield self._failed(submission, data, Code.UNSAFE_XML, str(exc))
            return
        except xmlsafe.MalformedXML as exc:
            yield self._failed(
                submission, data, Code.SCHEMA_INVALID, str(exc), source_line=exc.line
            )
            return
        if root.tag == canonical.BATCH:
            for child in root:
                if isinstance(child.tag, str):
                    yield self.prepare_element(submission, child, None)
        else:
            yield self.prepare_element(submission, root, data)

    def prepare_element(
        self, submission: Submission, element: etree._Element, data: bytes | None
    ) -> Candidate:
        """Validate and read one document element (a file's root or a batch child)."""
        raw = data if data is not None else etree.tostring(element)
        original = submission.original if submission.original is not None else raw
        where = submission.source or submission.channel
        if element.tag not in canonical.ROOTS:
            expected = ", ".join(sorted(t.split("}")[1] for t in canonical.ROOTS))
            return self._failed(
                submission,
                original,
                Code.SCHEMA_INVALID,
                f"{where}: root element {element.tag} (line {element.sourceline}) is "
                f"not a canonical document; expected one of {expected} in namespace "
                f"{canonical.NS}",
                source_line=element.sourceline,
            )
        if not canonical.lxml_schema().validate(element):
            hint = canonical.identity_of(element)
            label = f"{hint[0]} {hint[1]}/{hint[2]} from {where}" if hint else where
            errors = canonical.schema_findings(element, label)
            return Candidate(submission, original, raw, errors, identity_hint=hint)
        try:
            doc = canonical.read_document(element)
        except ValueError as exc:  # a value the schema let through but Python cannot
            return self._failed(
                submission,
                original,
                Code.SCHEMA_INVALID,
                f"{where}: {exc}; correct the value and send the document again",
                source_line=element.sourceline,
            )
        findings, bases = document_findings(doc, self._reference(doc))
        return Candidate(
            submission,
            original,
            raw,
            findings,
            doc,
            bases,
            digest=canonical.content_hash(element),
        )

    @staticmethod
    def _failed(
        submission: Submission,
        data: bytes,
        code: Code,
        message: str,
        source_line: int | None = None,
    ) -> Candidate:
        original = submission.original if submission.original is not None else data
        finding = Finding.of(code, message, source_line=source_line)
        return Candidate(submission, original, data, [finding])

    def prepare_path(
        self,
        path: Path | str,
        sender: str,
        channel: str = "cli",
        source: str | None = None,
    ) -> Iterator[Candidate]:
        """Prepare a file: read whole when small, streamed when a large batch."""
        source = source or os.path.basename(path)
        # This runs per file: os-level open, fstat and one read are four system
        # calls, where open() and readall() make seven.
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            small = size <= xmlsafe.STREAM_THRESHOLD_BYTES
            data = _read_whole(fd, size) if small else b""
        finally:
            os.close(fd)
        if small:
            yield from self.prepare(Submission(data, sender, channel, source))
            return
        sub = Submission(b"", sender, channel, source)
        for item in self.stream_path(Path(path), sub):
            if isinstance(item, Candidate):
                yield item
            else:
                yield from self.prepare(Submission(item, sender, channel, source))

    def stream_path(self, path: Path, sub: Submission) -> Iterator[bytes | Candidate]:
        """The documents of a large batch file, as bytes, with memory kept flat.

        A file over the batch limit, or one that stops being well-formed, yields a
        failed candidate holding the file's bytes for the quarantine; documents
        before the break are yielded as usual.
        """
        size = path.stat().st_size
        if size > xmlsafe.MAX_BATCH_FILE_BYTES:
            with path.open("rb") as fh:
                head = fh.read(65536)
            yield self._failed(
                sub,
                head,
                Code.UNSAFE_XML,
                f"{sub.source}: file is {size} bytes, over the batch file limit of "
                f"{xmlsafe.MAX_BATCH_FILE_BYTES} bytes (first 64 KiB kept); split it",
            )
            return
        with path.open("rb") as fh:
            try:
                for element in xmlsafe.stream(
                    fh, list(canonical.ROOTS), canonical.BATCH
                ):
                    yield etree.tostring(element)
            except (xmlsafe.UnsafeXML, xmlsafe.MalformedXML) as exc:
                code = (
                    Code.UNSAFE_XML
                    if isinstance(exc, xmlsafe.UnsafeXML)
                    else Code.SCHEMA_INVALID
                )
                # Quarantine the whole file only when it fits the in-memory limit;
                # a larger one would take its full size in memory (and in the row).
                fh.seek(0)
                whole = size <= xmlsafe.MAX_DOCUMENT_BYTES
                kept = fh.read() if whole else fh.read(65536)
                note = "" if whole else f" (file of {size} bytes; first 64 KiB kept)"
                yield self._failed(
                    sub,
                    kept,
                    code,
                    f"{sub.source}: {exc}{note}",
                    source_line=getattr(exc, "line", None),
                )


GC_THRESHOLD = 20_000
"""Allocations between young-generation collections during a bulk ingest."""


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
            _collect_rarely()
        _bulk_runs += 1
    try:
        yield
    finally:
        with _bulk_lock:
            _bulk_runs -= 1
            if _bulk_runs == 0:
                gc.set_threshold(*_saved_threshold)
                gc.unfreeze()


def _collect_rarely() -> None:
    """Freeze what is alive now out of the scans; collect young objects rarely."""
    gc.freeze()
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], GC_THRESHOLD), *threshold[1:])


_bulk_lock = threading.Lock()
_bulk_runs = 0
_saved_threshold = gc.get_threshold()


def _read_whole(fd: int, size: int) -> bytes:
    """Everything in the open file ``fd``, in one read when ``size`` is right.

    A short read, or a file that grew since ``size`` was taken, reads on to the end.
    """
    data = os.read(fd, size + 1)
    if len(data) == size:
        return data
    parts = [data]
    while chunk := os.read(fd, 65536):
        parts.append(chunk)
    return b"".join(parts)


# Worker-process state for parallel preparation (set by the pool initializer).
_worker: tuple[Preparer, str, str] | None = None


def _init_worker(references: list[ReferenceList], sender: str, channel: str) -> None:
    global _worker
    _worker = (Preparer(references), sender, channel)
    _collect_rarely()  # a worker lives for one bulk run: nothing to restore


def _chunks(items: Iterator[WorkItem]) -> Iterator[list[WorkItem]]:
    """Work items in chunks for the workers: a few small ones first."""
    size = RAMP_START
    while chunk := list(itertools.islice(items, size)):
        yield chunk
        size = min(size * 2, PREPARE_CHUNK)


WorkItem = tuple[
    str, Any, str
]  # ("path", path, file name) | ("doc", bytes, source) | ("done", Candidate, "")


def _prepare_items(items: list[WorkItem]) -> list[Candidate]:
    """Worker side: prepare files and streamed documents, in order."""
    assert _worker is not None
    preparer, sender, channel = _worker
    out: list[Candidate] = []
    for kind, value, source in items:
        if kind == "path":
            out += preparer.prepare_path(value, sender, channel, source)
        elif kind == "doc":
            out += preparer.prepare(Submission(value, sender, channel, source))
        else:
            out.append(value)
    return out


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
    ) -> Iterator[Candidate]:
        """Prepare many files in input order, on worker processes when it pays.

        Large batch files are streamed here and their documents handed to the
        workers; small files are read by the workers themselves. The commit stage
        stays in this process and in order, so a document that depends on an
        earlier one (an export authorization after its import authorization)
        always sees it.
        """
        workers = min(PREPARE_WORKERS, max((os.cpu_count() or 1) - 1, 1))
        if sizes is None:
            sizes = [os.stat(p).st_size for p in paths]
        large = any(size > xmlsafe.STREAM_THRESHOLD_BYTES for size in sizes)
        if not large and len(paths) < PARALLEL_MIN_FILES:
            for path in paths:
                yield from self.prepare_path(path, sender, channel)
            return
        yield from self._in_workers(
            self._work_items(paths, sizes, sender, channel), workers, sender, channel
        )

    def _work_items(
        self,
        paths: Sequence[Path | str],
        sizes: Sequence[int],
        sender: str,
        channel: str,
    ) -> Iterator[WorkItem]:
        for path, size in zip(paths, sizes, strict=True):
            name = os.path.basename(path)
            if size <= xmlsafe.STREAM_THRESHOLD_BYTES:
                yield ("path", str(path), name)
                continue
            sub = Submission(b"", sender, channel, name)
            for item in self.preparer.stream_path(Path(path), sub):
                if isinstance(item, Candidate):
                    yield ("done", item, "")
                else:
                    yield ("doc", item, name)

    def _in_workers(
        self, items: Iterator[WorkItem], workers: int, sender: str, channel: str
    ) -> Iterator[Candidate]:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(
            workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(self.references, sender, channel),
        ) as pool:
            # A bounded window of chunks in flight keeps memory flat. The first
            # chunks are small so the commit stage has work while the rest fill.
            chunks = _chunks(items)
            pending: deque[Future[list[Candidate]]] = deque()
            for chunk in itertools.islice(chunks, workers * PREPARE_WINDOW):
                pending.append(pool.submit(_prepare_items, chunk))
            while pending:
                candidates = pending.popleft().result()
                nxt = next(chunks, None)
                if nxt is not None:
                    pending.append(pool.submit(_prepare_items, nxt))
                yield from candidates

    def ingest(self, submissions: Iterable[Submission]) -> Iterator[Result]:
        """Ingest every submission; yields one result per document, after commit."""
        return self.commit_all(c for s in submissions for c in self.prepare(s))

    def commit_all(self, candidates: Iterable[Candidate]) -> Iterator[Result]:
        """Commit prepared candidates in batches; yields results after each commit."""
        batch: list[Candidate] = []
        # The first transactions are smaller: the commit stage starts as soon as
        # the first documents are prepared instead of waiting for a whole batch.
        limit = min(RAMP_START, self.batch_size)
        with bulk_collection():
            for candidate in candidates:
                batch.append(candidate)
                if len(batch) >= limit:
                    yield from self._commit(batch)
                    batch = []
                    limit = min(limit * 2, self.batch_size)
            if batch:
                yield from self._commit(batch)

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


__all__ = ["Candidate", "Pipeline", "Preparer", "Result", "Submission"]
