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


def check_prolog(head: bytes) -> None:
    """Refuse a DOCTYPE before the root element.

    Raises:
        UnsafeXML: the prolog declares a document type.
    """
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


def stream(
    source: IO[bytes], tags: list[str], container: str
) -> Iterator[etree._Element]:
    """Yield each document element of a large batch file, freeing memory as it goes.

    Elements named in ``tags`` that are direct children of ``container`` (or the root
    itself) are yielded; the caller must finish with each element before asking for
    the next, because it is cleared afterwards.

    Raises:
        UnsafeXML: a DOCTYPE in the prolog.
        MalformedXML: the file stops being well-formed (documents already yielded
            stay yielded).
    """
    head = source.read(4096)
    check_prolog(head)
    source.seek(0)
    context = etree.iterparse(source, events=("end",), tag=tags, **SAFE_OPTIONS)
    try:
        for _event, element in context:
            parent = element.getparent()
            if parent is not None and parent.tag != container:
                continue
            yield element
            # Keep memory flat: drop this document and everything before it.
            element.clear()
            if parent is not None:
                while element.getprevious() is not None:
                    del parent[0]
    except etree.XMLSyntaxError as exc:
        raise MalformedXML(f"not well-formed XML: {exc.msg}", exc.lineno) from exc
