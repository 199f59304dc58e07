"""The first stage of ingest, which needs no database: parse, validate, read, rules.

:class:`Preparer` turns bytes into :class:`~i2es_hub.submissions.Candidate` records.
For many files, or a large batch file, it runs in a process of its own
(:class:`PrepareProcess`) beside the commit stage; the command line starts it before
it loads the database layer, so it parses and validates while the commit process
imports SQLAlchemy and reads the reference lists. Nothing here imports the
database layer.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import itertools
import multiprocessing
import os
import pickle
import queue
import sqlite3
import stat
import threading
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, NamedTuple
from urllib.parse import quote

from lxml import etree

from i2es_hub import canonical, xmlsafe
from i2es_hub.errors import InputFileError, PrepareProcessError
from i2es_hub.findings import Code, Finding
from i2es_hub.reference import ReferenceList, reference_for
from i2es_hub.rules import document_findings
from i2es_hub.submissions import Candidate, Submission
from i2es_hub.transfer import dump_chunk, load_chunk

PREPARE_CHUNK = 250  # candidates per message to the commit process
START_WINDOW = 3_000  # documents the prepare process may hold ready
PARALLEL_MIN_FILES = 1000
RAMP_START = 50  # documents in the first chunk: results come back sooner


class Preparer:
    """The database-free first stage: parse, validate, read, document rules.

    Holds only the reference lists, so it can run in a process of its own.
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
        yield from self.stream_path(
            Path(path), Submission(b"", sender, channel, source)
        )

    def stream_path(self, path: Path, sub: Submission) -> Iterator[Candidate]:
        """Prepare the documents of a large batch file, with memory kept flat.

        Each document is validated and read where it stands in the streamed tree
        (its own bytes are kept as its original); schema findings give its line in
        the file. A file over the batch limit, or one that stops being well-formed,
        yields a failed candidate holding the file's bytes for the quarantine;
        documents before the break are yielded as usual.
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
                    # done with the element before the stream clears it
                    yield self.prepare_element(sub, element, None)
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


def _chunks(candidates: Iterator[Candidate]) -> Iterator[list[Candidate]]:
    """Candidates in chunks for the commit process: a few small ones first."""
    size = RAMP_START
    while chunk := list(itertools.islice(candidates, size)):
        yield chunk
        size = min(size * 2, PREPARE_CHUNK)


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
    """Whether preparing these files in a prepare process pays for starting it."""
    large = any(size > xmlsafe.STREAM_THRESHOLD_BYTES for size in sizes)
    return large or len(sizes) >= PARALLEL_MIN_FILES


class PrepareProcess:
    """A forked process preparing a list of files in order, for the commit stage.

    The process knows the whole list from the start (it is forked with it), reads
    and streams the files itself and writes the prepared candidates, a chunk at a
    time, to a pipe this process reads: the commit stage does nothing but commit,
    and the prepare process never waits to be given work. A bounded queue of
    chunks lets it run ahead (more before the first commit, while the commit
    process loads the database layer) with memory kept flat.

    One process: on two cores the commit stage needs the other one, and the two
    stages cost about the same per document, so a second prepare process would
    compete with the commit stage for a core (see docs/performance.md).

    When the reference lists are not known yet, the process prepares without the
    document rules until :meth:`send_references` hands them over;
    :meth:`candidates` yields those early candidates unchecked
    (``Candidate.checked`` is False) and the caller applies the rules with
    :meth:`Preparer.check`. Told a SQLite database with :meth:`fold_log`, the
    process checkpoints its write-ahead log once everything is prepared, until it
    is stopped.

    Use as a context manager: leaving it stops the process.
    """

    def __init__(
        self,
        paths: Sequence[Path | str],
        sizes: Sequence[int] | None,
        sender: str,
        channel: str,
        references: list[ReferenceList] | None = None,
    ) -> None:
        # Without sizes, this process checks the files of the first chunks and the
        # prepare process checks the others first thing, while this process loads
        # the database layer; a bad file is reported before any candidate.
        first = checked_sizes(paths[:START_WINDOW]) if sizes is None else list(sizes)
        results_in, results_out = os.pipe()
        references_in, references_out = os.pipe()
        _widen(results_out)
        _widen(references_out)
        context = multiprocessing.get_context("fork")
        self.process = context.Process(
            target=_serve,
            args=(
                _Job(paths, first, sender, channel, references),
                results_out,
                references_in,
                (results_in, references_out),
            ),
            name="i2es-hub prepare",
            daemon=True,
        )
        self.process.start()
        os.close(results_out)
        os.close(references_in)
        self._results: BinaryIO | None = os.fdopen(results_in, "rb", 1 << 20)
        self._references: BinaryIO | None = os.fdopen(references_out, "wb")

    @classmethod
    def for_files(
        cls, paths: Sequence[Path | str], sender: str, channel: str
    ) -> PrepareProcess | None:
        """A prepare process started at once for many files, or None for a few.

        Raises:
            InputFileError: one of the first files cannot be read (the others are
                checked by the prepare process; :meth:`candidates` raises for them).
        """
        if len(paths) < PARALLEL_MIN_FILES:
            return None
        return cls(paths, None, sender, channel)

    def send_references(self, references: list[ReferenceList]) -> None:
        """Hand the reference lists to the prepare process (once, when read)."""
        # A process that has prepared everything has no use for them: the commit
        # stage checks what it prepared without.
        self._tell("references", references)

    def fold_log(self, database: str) -> None:
        """Have the prepare process fold the commit stage's write-ahead log.

        Once it has prepared every document, the prepare process's core is idle
        while the commit stage works through what is queued (up to a few
        thousand documents). It then copies what the commit stage has committed
        from the SQLite write-ahead log into the database file (passive
        checkpoints, which neither wait for the writer nor make it wait), so
        that closing the database at the end has little left to copy. The same
        checkpoints, made earlier and elsewhere: durability is unchanged.
        """
        self._tell("fold", database)

    def _tell(self, kind: str, payload: Any) -> None:
        assert self._references is not None, "the prepare process is closed"
        # The prepare process reads these in a thread of its own, so this never
        # waits on the results pipe; one that has stopped no longer needs them.
        with contextlib.suppress(BrokenPipeError):
            pickle.dump((kind, payload), self._references, pickle.HIGHEST_PROTOCOL)
            self._references.flush()

    def candidates(self) -> Iterator[Candidate]:
        """Prepared candidates in input order; the process ends after the last.

        Raises:
            InputFileError: a file checked by the prepare process cannot be read;
                raised before the first candidate, so nothing is stored.
            PrepareProcessError: the prepare process failed or was stopped.
        """
        assert self._results is not None, "the prepare process is closed"
        results = self._results
        while True:
            try:
                kind, payload = pickle.load(results)
            except EOFError:
                self.process.join(5)
                raise PrepareProcessError(
                    "the prepare process stopped before it had sent every document "
                    f"(exit code {self.process.exitcode}); batches committed "
                    "before it are stored, and ingesting the same files again "
                    "reports them as duplicates"
                ) from None
            if kind == "chunk":
                yield from load_chunk(payload)
            elif kind == "done":
                return
            elif kind == "refused":
                raise payload
            else:  # "failed": the prepare process's own traceback
                raise PrepareProcessError(
                    f"the prepare process failed:\n{payload}\nbatches committed "
                    "before it are stored; report this with the traceback"
                )

    def close(self) -> None:
        """Stop the prepare process, dropping work not yet read."""
        for stream in (self._references, self._results):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._references = self._results = None
        # with the pipe closed, the process stops at its next write
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()

    def __enter__(self) -> PrepareProcess:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class _Job(NamedTuple):
    paths: Sequence[Path | str]
    sizes: list[int]  # the first files' checked sizes (all, when the caller had them)
    sender: str
    channel: str
    references: list[ReferenceList] | None


QUEUED_CHUNKS = START_WINDOW // PREPARE_CHUNK
"""Chunks the prepare process may hold ready beyond what the pipe holds."""


def _widen(fd: int) -> None:
    """Let a pipe hold a chunk or more (Linux; elsewhere the default stays)."""
    with contextlib.suppress(AttributeError, OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)


PIPE_BYTES = 1 << 20
FOLD_INTERVAL = 0.05  # seconds between checkpoints once everything is prepared


def _serve(
    job: _Job, results_out: int, references_in: int, theirs: tuple[int, ...]
) -> None:
    """The prepare process: prepare every file in order, results to the pipe."""
    for fd in theirs:  # the commit process's ends: EOF must reach it when this ends
        os.close(fd)
    collect_rarely()  # the process lives for one bulk run: nothing to restore
    ready: queue.Queue[bytes | None] = queue.Queue(QUEUED_CHUNKS)
    stopped = threading.Event()  # the commit process stopped reading
    sender = threading.Thread(
        target=_send, args=(ready, results_out, stopped), daemon=True
    )
    sender.start()
    preparer = Preparer(job.references)
    told = _Told()
    threading.Thread(
        target=_receive, args=(references_in, preparer, told), daemon=True
    ).start()

    def put(kind: str, payload: Any) -> None:
        if stopped.is_set():
            raise _Stopped
        ready.put(pickle.dumps((kind, payload), pickle.HIGHEST_PROTOCOL))

    try:
        if len(job.paths) > len(job.sizes):
            try:
                checked_sizes(job.paths[len(job.sizes) :])
            except InputFileError as exc:
                put("refused", exc)
                return
        for chunk in _chunks(_prepare_all(preparer, job)):
            put("chunk", dump_chunk(chunk))
        put("done", None)
        _fold(told)
    except _Stopped:
        pass
    except BaseException:
        with contextlib.suppress(_Stopped):
            put("failed", traceback.format_exc())
    finally:
        ready.put(None)  # never blocks for long: the sender drains the queue
        sender.join()


class _Stopped(Exception):
    """The commit process closed the pipe: stop preparing."""


def _prepare_all(preparer: Preparer, job: _Job) -> Iterator[Candidate]:
    for path in job.paths:  # prepare_path streams the large ones
        yield from preparer.prepare_path(path, job.sender, job.channel)


def _send(ready: queue.Queue[bytes | None], fd: int, stopped: threading.Event) -> None:
    """Write queued chunks to the pipe (a thread: writing releases the GIL).

    When the commit process has closed its end, the rest of the queue is drained
    and dropped, so the preparing thread is never left blocked on a full queue.
    """
    while (data := ready.get()) is not None:
        if stopped.is_set():
            continue
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError:  # EPIPE: nobody reads any more
            stopped.set()
    os.close(fd)


class _Told:
    """What the commit process has told the prepare process beyond the lists."""

    def __init__(self) -> None:
        self.database: str | None = None  # a SQLite file whose log to fold
        self.closed = threading.Event()  # the commit process closed its end


def _receive(fd: int, preparer: Preparer, told: _Told) -> None:
    """Take what the commit process sends, until it closes its end."""
    with os.fdopen(fd, "rb") as stream, contextlib.suppress(EOFError, OSError):
        while True:
            kind, payload = pickle.load(stream)
            if kind == "references":
                preparer.references = payload
            elif kind == "fold":
                told.database = payload
    told.closed.set()


def _fold(told: _Told) -> None:
    """Checkpoint the commit stage's database until the commit process is done.

    If the database cannot be opened or checkpointed here, folding stops and the
    commit process's own checkpoints do the work, as without a prepare process.
    """
    if told.database is None:
        return
    try:
        conn = sqlite3.connect(
            f"file:{quote(os.path.abspath(told.database))}?mode=rw",
            uri=True,
            isolation_level=None,
        )
    except sqlite3.Error:
        return
    with contextlib.closing(conn), contextlib.suppress(sqlite3.Error):
        conn.execute("PRAGMA synchronous=NORMAL")  # the hub's durability setting
        while not told.closed.is_set():
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            told.closed.wait(FOLD_INTERVAL)


__all__ = [
    "Candidate",
    "PrepareProcess",
    "PrepareProcessError",
    "Preparer",
    "Submission",
    "checked_sizes",
    "worth_parallel",
]
