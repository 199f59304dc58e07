"""How prepared candidates cross from the prepare process to the commit process.

A chunk of candidates travels as one ``marshal`` payload of plain values: tuples,
strings, numbers, dates as day ordinals and decimals as their text. Pickling the
records' object graph (a reduce call per record, per date and per decimal) was the
prepare process's largest cost after reading the model: 20 against 8.5 µs per
document for the flat form, for 2.4 µs more on the commit side to rebuild the
records (docs/performance.md). Both ends run the same interpreter (the prepare
process is forked), so marshal's format is shared. A chunk holding a value marshal
cannot carry (a finding's figures are free-form) goes by pickle instead.

The codec names every field of the records it carries; a field added to one of
them and not here fails at import (see ``_check_fields``), not in transit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import marshal
import pickle
from decimal import Decimal
from typing import Any

from i2es_hub.canonical import DocType, Document, Line, Party, Ref
from i2es_hub.findings import Finding
from i2es_hub.submissions import Candidate, Submission

_MARSHAL, _PICKLE = b"M", b"P"


def dump_chunk(candidates: list[Candidate]) -> bytes:
    """One chunk of candidates as bytes for :func:`load_chunk`."""
    try:
        return _MARSHAL + marshal.dumps([_candidate(c) for c in candidates])
    except ValueError:  # a value marshal cannot carry
        return _PICKLE + pickle.dumps(candidates, pickle.HIGHEST_PROTOCOL)


def load_chunk(data: bytes) -> list[Candidate]:
    """The candidates :func:`dump_chunk` wrote, equal to the originals."""
    if data[:1] == _PICKLE:
        candidates: list[Candidate] = pickle.loads(data[1:])
        return candidates
    return [_to_candidate(t) for t in marshal.loads(data[1:])]


# ----- to plain values -------------------------------------------------------------


def _day(value: dt.date | None) -> int | None:
    return None if value is None else value.toordinal()


def _party(p: Party | None) -> tuple[Any, ...] | None:
    if p is None:
        return None
    return (p.name, p.street, p.city, p.postal_code, p.country, p.licence)


def _line(line: Line) -> tuple[Any, ...]:
    strength = line.strength
    base = line.base_quantity
    return (
        line.number,
        line.substance,
        line.form,
        str(line.quantity),
        line.unit,
        line.convention,
        line.schedule,
        line.pharmaceutical_form,
        line.preparation,
        None if strength is None else (str(strength[0]), strength[1]),
        None if base is None else str(base),
    )


def _document(d: Document) -> tuple[Any, ...]:
    r = d.ref
    return (
        d.doc_type.value,
        d.number,
        d.issuer,
        d.authority,
        d.issue_date.toordinal(),
        tuple([_line(line) for line in d.lines]),
        _day(d.validity_from),
        _day(d.validity_until),
        _party(d.importer),
        _party(d.exporter),
        d.multiple_consignments,
        d.bonded_warehouse,
        d.special_import_licence,
        d.emergency,
        None
        if r is None
        else (r.doc_type.value, r.number, r.country, _day(r.issue_date), r.authority),
        _day(d.expected_dispatch),
        _day(d.dispatch_date),
        d.endorsing_authority,
        _day(d.receipt_date),
        _day(d.expired_without_import),
        d.reason,
        d.remarks,
        d.source_line,
    )


def _candidate(c: Candidate) -> tuple[Any, ...]:
    s = c.submission
    return (
        (s.data, s.sender, s.channel, s.source, s.original),
        c.original,
        c.canonical,
        [
            (f.code, f.severity, f.message, f.line, f.path, f.source_line, f.figures)
            for f in c.findings
        ],
        None if c.doc is None else _document(c.doc),
        [(number, str(grams)) for number, grams in c.bases.items()],
        c.identity_hint,
        c.digest,
        c.checked,
    )


# ----- and back ----------------------------------------------------------------------

_from_day = dt.date.fromordinal
_DOC_TYPES = {t.value: t for t in DocType}


def _to_day(value: int | None) -> dt.date | None:
    return None if value is None else _from_day(value)


def _to_party(t: tuple[Any, ...] | None) -> Party | None:
    return None if t is None else Party(*t)


def _to_line(t: tuple[Any, ...]) -> Line:
    number, substance, form, qty, unit, conv, sched, pharma, prep, strength, base = t
    return Line(
        number,
        substance,
        form,
        Decimal(qty),
        unit,
        conv,
        sched,
        pharma,
        prep,
        None if strength is None else (Decimal(strength[0]), strength[1]),
        None if base is None else Decimal(base),
    )


def _to_document(t: tuple[Any, ...]) -> Document:
    # fmt: off
    (kind, number, issuer, authority, issued, lines, valid_from, valid_until,
     importer, exporter, multiple, bonded, licence, emergency, ref, expected,
     dispatched, endorser, received, expired, reason, remarks, source_line) = t
    # fmt: on
    return Document(
        _DOC_TYPES[kind],
        number,
        issuer,
        authority,
        _from_day(issued),
        tuple([_to_line(line) for line in lines]),
        _to_day(valid_from),
        _to_day(valid_until),
        _to_party(importer),
        _to_party(exporter),
        multiple,
        bonded,
        licence,
        emergency,
        None
        if ref is None
        else Ref(_DOC_TYPES[ref[0]], ref[1], ref[2], _to_day(ref[3]), ref[4]),
        _to_day(expected),
        _to_day(dispatched),
        endorser,
        _to_day(received),
        _to_day(expired),
        reason,
        remarks,
        source_line,
    )


def _to_candidate(t: tuple[Any, ...]) -> Candidate:
    sub, original, canonical, findings, doc, bases, hint, digest, checked = t
    return Candidate(
        Submission(*sub),
        original,
        canonical,
        [Finding(*f) for f in findings],
        None if doc is None else _to_document(doc),
        {number: Decimal(grams) for number, grams in bases},
        hint,
        digest,
        checked,
    )


# The field order the codec above writes, record by record.
_FIELDS = {
    Party: "name street city postal_code country licence",
    Line: "number substance form quantity unit convention schedule "
    "pharmaceutical_form preparation strength base_quantity",
    Ref: "doc_type number country issue_date authority",
    Document: "doc_type number issuer authority issue_date lines validity_from "
    "validity_until importer exporter multiple_consignments bonded_warehouse "
    "special_import_licence emergency ref expected_dispatch dispatch_date "
    "endorsing_authority receipt_date expired_without_import reason remarks "
    "source_line",
    Finding: "code severity message line path source_line figures",
    Submission: "data sender channel source original",
    Candidate: "submission original canonical findings doc bases identity_hint "
    "digest checked",
}


def _check_fields() -> None:
    for record, order in _FIELDS.items():
        names = " ".join(f.name for f in dataclasses.fields(record))
        if names != order:
            raise TypeError(
                f"i2es_hub.transfer does not carry {record.__name__} as it is now "
                f"({names}); update the codec and its field list"
            )


_check_fields()

__all__ = ["dump_chunk", "load_chunk"]
