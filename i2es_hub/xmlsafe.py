"""Safe intake of XML from outside the hub.

Every byte that comes from a national system goes through here. The parser never
expands entities, never loads a DTD, never touches the network and refuses trees
deeper or larger than libxml2's safe defaults. A document that carries a DOCTYPE is
refused outright: no exchange format the hub speaks needs one (DESIGN.md section 6).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from typing import IO

from lxml import etree

MAX_DOCUMENT_BYTES = int(
    os.environ.get("I2ES_HUB_MAX_DOCUMENT_BYTES", 10 * 1024 * 1024)
)
"""Largest single document or in-memory batch accepted, in bytes."""

STREAM_THRESHOLD_BYTES = int(
    os.environ.get("I2ES_HUB_STREAM_THRESHOLD_BYTES", 1024 * 1024)
)
"""Files larger than this are streamed document by document (memory stays flat)."""

MAX_BATCH_FILE_BYTES = int(
    os.environ.get("I2ES_HUB_MAX_BATCH_FILE_BYTES", 4 * 1024 * 1024 * 1024)
)
"""Largest batch file streamed from disk, in bytes."""

_ROOT_START = re.compile(rb"<[A-Za-z_]")
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_local = threading.local()


class UnsafeXML(ValueError):
    """The bytes were refused before or while parsing: DOCTYPE, size or depth."""


class MalformedXML(ValueError):
    """The bytes are not well-formed XML.

    Attributes:
        line: Line number in the input where the parser stopped, if known.
    """

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


SAFE_OPTIONS = {
    "resolve_entities": False,
    "load_dtd": False,
    "no_network": True,
    "huge_tree": False,
    "remove_pis": True,
    "remove_blank_text": True,
}
"""Parser options for outside XML: no entities, DTDs or network; libxml2's limits."""


def _parser() -> etree.XMLParser:
    # lxml parsers keep state and must not be shared between threads.
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            dtd_validation=False, collect_ids=False, **SAFE_OPTIONS
        )
        _local.parser = parser
    return parser


# Byte order marks of the wide encodings libxml2 reads, and how "<" starts
# without one; UTF-32 first, since its little-endian mark starts like UTF-16's.
_WIDE = (
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\xfe\xff", "utf-16-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00<", "utf-16-be"),
    (b"<\x00", "utf-16-le"),
)


_WIDE_STARTS = frozenset(mark[:2] for mark, _ in _WIDE)


def _as_utf8(head: bytes) -> bytes:
    """The head re-encoded as UTF-8 when it is UTF-16 or UTF-32, else unchanged."""
    if head[:2] not in _WIDE_STARTS:  # UTF-8 or ASCII: nearly every document
        return head
    for mark, codec in _WIDE:
        if head.startswith(mark):
            start = 0 if b"<" in mark else len(mark)
            return head[start:].decode(codec, errors="ignore").encode("utf-8")
    return head


def check_prolog(head: bytes) -> None:
    """Refuse a DOCTYPE before the root element, in UTF-8, UTF-16 or UTF-32.

    Raises:
        UnsafeXML: the prolog declares a document type.
    """
    head = _as_utf8(head)
    match = _ROOT_START.search(head)
    prolog = head[: match.start()] if match else head
    if _DOCTYPE.search(prolog):
        raise UnsafeXML(
            "the document declares a DOCTYPE; DTDs and entities are refused "
            "(remove the <!DOCTYPE ...> declaration and send the document again)"
        )


def parse(data: bytes) -> etree._Element:
    """Parse one in-memory document safely and return its root element.

    Raises:
        UnsafeXML: too large, or carries a DOCTYPE.
        MalformedXML: not well-formed, with the line where parsing stopped.
    """
    if len(data) > MAX_DOCUMENT_BYTES:
        raise UnsafeXML(
            f"document is {len(data)} bytes, over the limit of {MAX_DOCUMENT_BYTES} "
            "bytes (split it into a batch file, or raise I2ES_HUB_MAX_DOCUMENT_BYTES)"
        )
    check_prolog(data[:4096])
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise MalformedXML(f"not well-formed XML: {exc.msg}", exc.lineno) from exc
    # Belt and braces for encodings the byte scan cannot read (UTF-16 and the like).
    if root.getroottree().docinfo.doctype:
        raise UnsafeXML(
            "the document declares a DOCTYPE; DTDs and entities are refused"
        )
    return root


class _PerDocumentReader:
    """Reads a batch file for ``iterparse`` and refuses a document over the limit.

    Without it, one huge document inside (or as) a streamed file would be built
    whole in memory before anyone could look at its size: a 200 MB document took
    2 GB. The count restarts after each document, so it measures one document
    plus the parser's read-ahead.
    """

    _SLACK = 1024 * 1024  # read-ahead and the bytes between two documents

    def __init__(self, source: IO[bytes], limit: int) -> None:
        self._source = source
        self._limit = limit
        self._since = 0
        self._offset = 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self._since += len(data)
        self._offset += len(data)
        if self._since > self._limit + self._SLACK:
            raise UnsafeXML(
                f"a document passes {self._limit} bytes (at byte {self._offset} of "
                "the file), over the limit for one document; split it, or raise "
                "I2ES_HUB_MAX_DOCUMENT_BYTES"
            )
        return data

    def next_document(self) -> None:
        """Start counting the next document."""
        self._since = 0


def stream(
    source: IO[bytes], tags: list[str], container: str
) -> Iterator[etree._Element]:
    """Yield each document element of a large batch file, freeing memory as it goes.

    Elements named in ``tags`` that are direct children of ``container`` (or the root
    itself) are yielded; the caller must finish with each element before asking for
    the next, because it is cleared afterwards.

    Raises:
        UnsafeXML: a DOCTYPE in the prolog, or one document over
            `MAX_DOCUMENT_BYTES` (refused while it is read, not after).
        MalformedXML: the file stops being well-formed (documents already yielded
            stay yielded).
    """
    head = source.read(4096)
    check_prolog(head)
    source.seek(0)
    counted = _PerDocumentReader(source, MAX_DOCUMENT_BYTES)
    context = etree.iterparse(counted, events=("end",), tag=tags, **SAFE_OPTIONS)
    try:
        for _event, element in context:
            parent = element.getparent()
            if parent is not None and parent.tag != container:
                continue
            yield element
            counted.next_document()
            # Keep memory flat: drop this document and everything before it.
            element.clear()
            if parent is not None:
                while element.getprevious() is not None:
                    del parent[0]
    except etree.XMLSyntaxError as exc:
        raise MalformedXML(f"not well-formed XML: {exc.msg}", exc.lineno) from exc
