"""The first stage of ingest, which needs no database: parse, validate, read, rules.

:class:`Preparer` turns bytes into :class:`~i2es_hub.submissions.Candidate` records.
For many files it runs in worker processes (:class:`PrepareWorkers`), and the
command line starts them before it loads the database layer, so they parse and
validate while the commit process imports SQLAlchemy and reads the reference lists.
Nothing here imports the database layer.
"""

from __future__ import annotations

import gc
import itertools
import multiprocessing
import os
import stat
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

from lxml import etree

from i2es_hub import canonical, xmlsafe
from i2es_hub.errors import InputFileError
from i2es_hub.findings import Code, Finding
from i2es_hub.reference import ReferenceList, reference_for
from i2es_hub.rules import document_findings
from i2es_hub.submissions import Candidate, Submission

PREPARE_WORKERS = 3
PREPARE_CHUNK = 250
PREPARE_WINDOW = 4  # chunks in flight per worker: more than a batch's worth
START_WINDOW = 3_000  # documents a worker may prepare before the first commit
PARALLEL_MIN_FILES = 1000
RAMP_START = 50  # documents in the first chunk: results come back sooner


class Preparer:
    """The database-free first stage: parse, validate, read, document rules.

    Holds only the reference lists, so it can run in worker processes.
    """

    def __init__(self, references: list[ReferenceList] | None) -> None:
        # None: not known yet (a worker started before the database was read);
        # the document rules are then left to :meth:`check`.
        self.references = references
        canonical.lxml_schema()  # compile once, before the first document

    def check(self, candidate: Candidate) -> None:
        """Apply the document rules to a candidate prepared without references."""
        assert self.references is not None
        if candidate.checked or candidate.doc is None:
            return
        doc = candidate.doc
        findings, bases = document_findings(
            doc, reference_for(self.references, doc.issue_date)
        )
        candidate.findings = findings
        candidate.bases = bases
        candidate.checked = True

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
        digest = canonical.content_hash(element)
        if self.references is None:
            return Candidate(
                submission, original, raw, [], doc, digest=digest, checked=False
            )
        findings, bases = document_findings(
            doc, reference_for(self.references, doc.issue_date)
        )
        return Candidate(submission, original, raw, findings, doc, bases, digest=digest)

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


def collect_rarely() -> None:
    """Freeze what is alive now out of the scans; collect young objects rarely."""
    gc.freeze()
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], GC_THRESHOLD), *threshold[1:])


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
_worker: tuple[Preparer, Any, str, str] | None = None


def _init_worker(
    references: list[ReferenceList] | None, later: Any, sender: str, channel: str
) -> None:
    global _worker
    _worker = (Preparer(references), later, sender, channel)
    collect_rarely()  # a worker lives for one bulk run: nothing to restore


WorkItem = tuple[
    str, Any, str
]  # ("path", path, file name) | ("doc", bytes, source) | ("done", Candidate, "")


def _chunks(items: Iterator[WorkItem]) -> Iterator[list[WorkItem]]:
    """Work items in chunks for the workers: a few small ones first."""
    size = RAMP_START
    while chunk := list(itertools.islice(items, size)):
        yield chunk
        size = min(size * 2, PREPARE_CHUNK)


def _prepare_items(items: list[WorkItem]) -> list[Candidate]:
    """Worker side: prepare files and streamed documents, in order."""
    assert _worker is not None
    preparer, later, sender, channel = _worker
    if preparer.references is None and not later.empty():
        preparer.references = later.get()
    out: list[Candidate] = []
    for kind, value, source in items:
        if kind == "path":
            out += preparer.prepare_path(value, sender, channel, source)
        elif kind == "doc":
            out += preparer.prepare(Submission(value, sender, channel, source))
        else:
            out.append(value)
    return out


def work_items(
    preparer: Preparer,
    paths: Sequence[Path | str],
    sizes: Iterable[int],
    sender: str,
    channel: str,
) -> Iterator[WorkItem]:
    """Small files by name (workers read them); large batch files streamed here."""
    for path, size in zip(paths, sizes, strict=True):
        name = os.path.basename(path)
        if size <= xmlsafe.STREAM_THRESHOLD_BYTES:
            yield ("path", str(path), name)
            continue
        sub = Submission(b"", sender, channel, name)
        for item in preparer.stream_path(Path(path), sub):
            if isinstance(item, Candidate):
                yield ("done", item, "")
            else:
                yield ("doc", item, name)


def checked_sizes(paths: Sequence[Path | str]) -> list[int]:
    """The size of each file, refusing what is missing or not a regular file.

    One ``stat`` per file (about 4 µs each on the development machine).

    Raises:
        InputFileError: names the first file that cannot be ingested and why.
    """
    sizes = []
    for name in paths:
        try:
            info = os.stat(name)
        except OSError as exc:
            raise InputFileError(
                f"cannot read {str(name)!r}: {exc.strerror}; check the path "
                "(nothing was ingested)"
            ) from exc
        if not stat.S_ISREG(info.st_mode):
            raise InputFileError(
                f"{str(name)!r} is not a regular file; name the files inside it "
                "(for example DIR/*.xml); nothing was ingested"
            )
        sizes.append(info.st_size)
    return sizes


def worth_parallel(sizes: Sequence[int]) -> bool:
    """Whether preparing these files in worker processes pays for starting them."""
    large = any(size > xmlsafe.STREAM_THRESHOLD_BYTES for size in sizes)
    return large or len(sizes) >= PARALLEL_MIN_FILES


class _LaterSizes:
    """File sizes: the first known now, the rest from a worker's check."""

    def __init__(self, first: list[int], rest: Future[list[int]] | None) -> None:
        self.first, self.rest = first, rest

    def __iter__(self) -> Iterator[int]:
        yield from self.first
        if self.rest is not None:
            yield from self.rest.result()


class PrepareWorkers:
    """Worker processes preparing a list of files, results in input order.

    The first chunks are submitted (and the processes forked) at once. When the
    reference lists are not known yet, the workers prepare without the document
    rules until :meth:`send_references` hands them over; :meth:`candidates` yields
    those early candidates unchecked (``Candidate.checked`` is False) and the
    caller applies the rules with :meth:`Preparer.check`.

    Use as a context manager: leaving it stops the workers.
    """

    def __init__(
        self,
        paths: Sequence[Path | str],
        sizes: Sequence[int] | None,
        sender: str,
        channel: str,
        references: list[ReferenceList] | None = None,
    ) -> None:
        self.count = min(PREPARE_WORKERS, max((os.cpu_count() or 1) - 1, 1))
        window = START_WINDOW * self.count
        # Without sizes, this process checks the files of the first chunks (a
        # chunk more than they hold) and a worker checks the others first thing,
        # while this process loads the database layer.
        head = window + PREPARE_CHUNK
        first = checked_sizes(paths[:head]) if sizes is None else []
        context = multiprocessing.get_context("fork")
        self._later = context.SimpleQueue()
        self._pool = ProcessPoolExecutor(
            self.count,
            mp_context=context,
            initializer=_init_worker,
            initargs=(references, self._later, sender, channel),
        )
        self._rest: Future[list[int]] | None = None
        known: Iterable[int] | None = sizes
        if known is None:
            if len(paths) > head:
                self._rest = self._pool.submit(checked_sizes, paths[head:])
            known = _LaterSizes(first, self._rest)
        items = work_items(Preparer(references), paths, known, sender, channel)
        self._chunks = _chunks(items)
        # A bounded window of chunks in flight keeps memory flat; before the
        # first commit it is wider, so the workers are not idle while this
        # process loads the database layer.
        self._pending: deque[Future[list[Candidate]]] = deque()
        queued = 0
        for chunk in self._chunks:
            self._pending.append(self._pool.submit(_prepare_items, chunk))
            queued += len(chunk)
            if queued >= window:
                break

    @classmethod
    def for_files(
        cls, paths: Sequence[Path | str], sender: str, channel: str
    ) -> PrepareWorkers | None:
        """Workers started at once for many files, or None when too few to pay.

        Raises:
            InputFileError: one of the first files cannot be read (the others are
                checked by a worker; :meth:`candidates` raises for them).
        """
        if len(paths) < PARALLEL_MIN_FILES:
            return None
        return cls(paths, None, sender, channel)

    def send_references(self, references: list[ReferenceList]) -> None:
        """Hand the reference lists to every worker (once, when they are read)."""
        for _ in range(self.count):
            self._later.put(references)

    def candidates(self) -> Iterator[Candidate]:
        """Prepared candidates in input order; the workers stop after the last.

        Raises:
            InputFileError: a file checked by a worker cannot be read; raised
                before the first candidate, so nothing is stored.
        """
        if self._rest is not None:
            self._rest.result()
        with self._pool:
            while self._pending:
                candidates = self._pending.popleft().result()
                if len(self._pending) < self.count * PREPARE_WINDOW:
                    nxt = next(self._chunks, None)
                    if nxt is not None:
                        self._pending.append(self._pool.submit(_prepare_items, nxt))
                yield from candidates

    def close(self) -> None:
        """Stop the workers, dropping work not started."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> PrepareWorkers:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


__all__ = [
    "Candidate",
    "PrepareWorkers",
    "Preparer",
    "Submission",
    "checked_sizes",
    "worth_parallel",
]
