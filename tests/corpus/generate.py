"""Build the corpus payloads that are too big, too binary or too templated to keep.

The manifest (``manifest.yaml``) names each case's payload either as a file in
``files/`` or as a recipe of this module. Recipes run at test time and write
nothing into the tree: the 200 MB document is streamed into a temporary folder.

Run it by hand to look at the payloads::

    .venv/bin/python -m tests.corpus.generate /tmp/corpus
"""

from __future__ import annotations

import gzip
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FILES = Path(__file__).resolve().parent / "files"
NS = b"urn:i2es-hub:canonical:1"

SAMPLES = {
    "example": ROOT / "examples" / "import-authorization.xml",
    "ke-sample": ROOT / "mappings" / "ke" / "samples" / "import-authorization.xml",
    "de-sample": ROOT / "mappings" / "de" / "samples" / "export-authorizations.xml",
    "ch-sample": ROOT / "mappings" / "ch" / "samples" / "import-authorization.json",
}
"""Valid documents that recipes start from, by name."""

MiB = 1024 * 1024
_NUMBER = re.compile(rb"\b(?:KE|DE|CH)-(?:IA|EA)-2026-[0-9]+")


@dataclass(frozen=True)
class Context:
    """What templated payloads need to know about the test run.

    Attributes:
        canary: A file outside the hub's data holding a unique secret.
        port: A loopback HTTP port that records every request it gets.
        workdir: Where large payloads are written.
    """

    canary: Path
    port: int
    workdir: Path


def fill(data: bytes, ctx: Context) -> bytes:
    """Replace the ``@CANARY@`` and ``@PORT@`` placeholders."""
    return data.replace(b"@CANARY@", str(ctx.canary).encode()).replace(
        b"@PORT@", str(ctx.port).encode()
    )


def from_spec(
    spec: Mapping[str, Any], ctx: Context, unique: str | None = None
) -> bytes:
    """Build an in-memory payload from a manifest spec.

    A spec has exactly one of ``file`` (in ``files/``), ``from`` (a name in
    `SAMPLES`) or ``recipe`` (a name in `RECIPES`), and optionally ``replace``
    (a list of ``[old, new]`` text pairs, each applied once) and ``encoding``
    (``utf-8-sig``, ``utf-16`` or ``utf-32``: re-encode with that BOM).
    ``unique`` is appended to the samples' document numbers, so that a valid case
    sent on several channels is a new document on each and not a duplicate.
    """
    if "file" in spec:
        data = fill((FILES / spec["file"]).read_bytes(), ctx)
    elif "from" in spec:
        data = SAMPLES[spec["from"]].read_bytes()
    else:
        data = RECIPES[spec["recipe"]](ctx)
    for old, new in spec.get("replace", []):
        assert old.encode() in data, f"{old!r} not in the payload of {spec}"
        data = data.replace(old.encode(), new.encode(), 1)
    if unique is not None:
        data = _NUMBER.sub(rb"\g<0>-" + unique.encode(), data)
    encoding = spec.get("encoding")
    if encoding:
        text = data.decode("utf-8").replace(
            'encoding="UTF-8"', f'encoding="{encoding.upper().removesuffix("-SIG")}"'
        )
        data = text.encode(encoding)
        if encoding in ("utf-16", "utf-32"):
            assert data[:2] in (b"\xff\xfe", b"\xfe\xff"), "Python writes a BOM"
    return data


# --- recipes -------------------------------------------------------------------


def quadratic_blowup(ctx: Context) -> bytes:
    """One 64 KiB entity referenced 40,000 times: 2.5 MB that would expand to 2.5 GB.

    Over the streaming threshold, so the CLI takes its streaming path.
    """
    refs = b"&a;" * 40_000
    return (
        b'<?xml version="1.0"?>\n<!DOCTYPE ImportAuthorization [<!ENTITY a "'
        + b"A" * 65536
        + b'">]>\n<ImportAuthorization xmlns="'
        + NS
        + b'"><IssuingAuthority>'
        + refs
        + b"</IssuingAuthority></ImportAuthorization>\n"
    )


def deep_nesting(ctx: Context) -> bytes:
    """200,000 nested elements inside a canonical root (about 2.6 MB)."""
    depth = 200_000
    return (
        b'<?xml version="1.0"?>\n<ImportAuthorization xmlns="'
        + NS
        + b'">'
        + b"<Lines>" * depth
        + b"</Lines>" * depth
        + b"</ImportAuthorization>\n"
    )


def quantity_digits(ctx: Context) -> bytes:
    """A quantity that is a valid xs:decimal of 401 digits (10**400)."""
    data = SAMPLES["example"].read_bytes()
    return data.replace(b'"g">1000<', b'"g">1' + b"0" * 400 + b"<", 1)


def invalid_utf8(ctx: Context) -> bytes:
    """The example with bytes that are not UTF-8 inside a name."""
    data = SAMPLES["example"].read_bytes()
    return data.replace(b"Kenya Medical", b"Kenya \xc3\x28\xff\xfe Medical", 1)


def binary(ctx: Context) -> bytes:
    """The example gzipped: a real mistake, and bytes no XML parser accepts."""
    return gzip.compress(SAMPLES["example"].read_bytes(), mtime=0)


def empty(ctx: Context) -> bytes:
    """No bytes at all."""
    return b""


def utf16_billion_laughs(ctx: Context) -> bytes:
    """The billion laughs in UTF-16, where a byte scan for DOCTYPE sees nothing."""
    text = (FILES / "billion-laughs.xml").read_text(encoding="utf-8")
    return text.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")


RECIPES: dict[str, Callable[[Context], bytes]] = {
    "quadratic-blowup": quadratic_blowup,
    "deep-nesting": deep_nesting,
    "quantity-digits": quantity_digits,
    "invalid-utf8": invalid_utf8,
    "binary": binary,
    "empty": empty,
    "utf16-billion-laughs": utf16_billion_laughs,
}
"""In-memory recipes, by the name the manifest uses."""


def huge_document(path: Path, size: int = 200 * MiB) -> Path:
    """Write a single well-formed import authorization of ``size`` bytes to ``path``.

    It is the example with one line repeated until the file reaches the size,
    written in chunks so memory stays flat while it is made.
    """
    head, _, rest = SAMPLES["example"].read_bytes().partition(b"<Lines>")
    line, _, tail = rest.partition(b"</Lines>")
    block = line * max(1, MiB // len(line))
    with path.open("wb") as out:
        out.write(head + b"<Lines>")
        written = len(head) + 7
        while written + len(block) + len(tail) + 8 < size:
            out.write(block)
            written += len(block)
        out.write(b"</Lines>" + tail)
    return path


def main(argv: list[str]) -> int:
    """Write every recipe (and the 200 MB document) into the folder given."""
    folder = Path(argv[0]) if argv else Path("corpus-out")
    folder.mkdir(parents=True, exist_ok=True)
    ctx = Context(folder / "canary.txt", 9, folder)
    for name, recipe in RECIPES.items():
        (folder / f"{name}.xml").write_bytes(recipe(ctx))
    huge_document(folder / "huge-document.xml")
    print(f"wrote {len(RECIPES) + 1} payloads to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
