"""The canonical schema: namespace, validation and the document model.

Every channel maps its input to canonical XML (namespace :data:`NS`); this module
validates it against ``xsd/canonical`` and reads it into :class:`Document`. The lxml
schema is compiled once per process for the hot path; xmlschema is built only when a
document fails, to report each error with its path and line.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Any

from lxml import etree

from i2es_hub.findings import Code, Finding
from i2es_hub.pickling import by_fields

NS = "urn:i2es-hub:canonical:1"
SCHEMA_VERSION = "1.0"
XSD_PATH = (
    Path(__file__).resolve().parent.parent
    / "xsd"
    / "canonical"
    / "i2es-canonical-1.xsd"
)
MAX_SCHEMA_ERRORS = 10


def q(name: str) -> str:
    """Clark name of a canonical element."""
    return f"{{{NS}}}{name}"


class DocType(StrEnum):
    """The document types, by the word used in the API, CLI and database."""

    IMPORT_AUTHORIZATION = "import-authorization"
    EXPORT_AUTHORIZATION = "export-authorization"
    EXPORT_DECLARATION = "export-declaration"
    ENDORSEMENT = "endorsement"
    CANCELLATION = "cancellation"


ROOTS: dict[str, DocType] = {
    q("ImportAuthorization"): DocType.IMPORT_AUTHORIZATION,
    q("ExportAuthorization"): DocType.EXPORT_AUTHORIZATION,
    q("ExportDeclaration"): DocType.EXPORT_DECLARATION,
    q("Endorsement"): DocType.ENDORSEMENT,
    q("Cancellation"): DocType.CANCELLATION,
}
BATCH = q("Batch")


@functools.cache
def lxml_schema() -> etree.XMLSchema:
    """The canonical schema compiled by libxml2, once per process."""
    return etree.XMLSchema(etree.parse(str(XSD_PATH)))


@functools.cache
def _xmlschema() -> Any:
    import xmlschema  # slow to import and build: only when a document fails

    return xmlschema.XMLSchema(str(XSD_PATH))


def schema_findings(element: etree._Element, label: str) -> list[Finding]:
    """Validate ``element`` as a document root; return SCHEMA_INVALID findings."""
    schema = lxml_schema()
    if schema.validate(element):
        return []
    findings = []
    for error in _xmlschema().iter_errors(etree.ElementTree(element)):
        elem = error.elem
        line = getattr(elem, "sourceline", None) if elem is not None else None
        value = ""
        if elem is not None and len(elem) == 0 and (elem.text or "").strip():
            value = f" (value {elem.text.strip()[:60]!r})"
        findings.append(
            Finding.of(
                Code.SCHEMA_INVALID,
                f"{label}: {error.reason or error.message}{value} at {error.path}, "
                f"line {line}; correct the element and send the document again",
                path=error.path,
                source_line=line,
            )
        )
        if len(findings) >= MAX_SCHEMA_ERRORS:
            break
    if not findings:  # the two validators disagree: trust libxml2's own report
        for entry in list(schema.error_log)[:MAX_SCHEMA_ERRORS]:
            findings.append(
                Finding.of(
                    Code.SCHEMA_INVALID,
                    f"{label}: {entry.message} (at {entry.path}, line {entry.line})",
                    path=entry.path,
                    source_line=entry.line,
                )
            )
    return findings


# ----- the document model -------------------------------------------------------
#
# The model's records (and the findings and submissions that travel with them) are
# read-only by convention, not frozen: a frozen dataclass's __init__ sets every field
# through object.__setattr__, about ten times the cost of a plain one, and each
# ingested document builds them twice (read in a worker, rebuilt when unpickled for
# the commit stage). Change one with dataclasses.replace, never in place.


@by_fields
@dataclass(slots=True)
class Party:
    """An importer or exporter: name, full address, country."""

    name: str
    street: tuple[str, ...]
    city: str
    postal_code: str
    country: str
    licence: str = ""


@by_fields
@dataclass(slots=True)
class Line:
    """One line of a document; for endorsements ``quantity`` is what was received."""

    number: int
    substance: str
    form: str
    quantity: Decimal
    unit: str
    convention: str = ""
    schedule: str = ""
    pharmaceutical_form: str = ""
    preparation: str = ""
    strength: tuple[Decimal, str] | None = None
    base_quantity: Decimal | None = None


@by_fields
@dataclass(slots=True)
class Ref:
    """A reference to another document, as quoted by the sender."""

    doc_type: DocType
    number: str
    country: str
    issue_date: dt.date | None = None
    authority: str = ""


@by_fields
@dataclass(slots=True)
class Document:
    """A canonical document, read from validated XML."""

    doc_type: DocType
    number: str
    issuer: str
    authority: str
    issue_date: dt.date
    lines: tuple[Line, ...] = ()
    validity_from: dt.date | None = None
    validity_until: dt.date | None = None
    importer: Party | None = None
    exporter: Party | None = None
    multiple_consignments: bool = False
    bonded_warehouse: bool = False
    special_import_licence: str = ""
    emergency: bool = False
    ref: Ref | None = None
    expected_dispatch: dt.date | None = None
    dispatch_date: dt.date | None = None
    endorsing_authority: str = ""
    receipt_date: dt.date | None = None
    expired_without_import: dt.date | None = None
    reason: str = ""
    remarks: str = ""
    source_line: int | None = field(default=None, compare=False, repr=False)

    @property
    def label(self) -> str:
        """How messages name this document: type, issuer and number."""
        return f"{self.doc_type.value} {self.issuer}/{self.number}"

    @property
    def importing_country(self) -> str | None:
        """The importing country: the importer's, or the issuer of an endorsement."""
        if self.importer is not None:
            return self.importer.country
        if self.doc_type is DocType.ENDORSEMENT:
            return self.issuer
        return None

    @property
    def exporting_country(self) -> str | None:
        """The exporting country: the exporter's, or the endorsed EA's issuer."""
        if self.exporter is not None:
            return self.exporter.country
        if self.doc_type is DocType.ENDORSEMENT and self.ref is not None:
            return self.ref.country
        return None

    def with_base_quantities(self, bases: dict[int, Decimal]) -> Document:
        """A copy whose lines carry the computed base quantities."""
        lines = tuple(
            replace(line, base_quantity=bases.get(line.number, line.base_quantity))
            for line in self.lines
        )
        return replace(self, lines=lines)


# ----- reading validated XML into the model -------------------------------------
#
# The schema has already fixed the structure, so each element's children are read
# once, in one loop, into a map of elements and a map of their stripped texts by
# local name; a field the document leaves out is then a dictionary miss, not a
# search. This runs for every document ingested: keep it lean.

_NS_LEN = len(NS) + 2
_STREET = q("Street")
_TRUE = ("true", "1")  # xs:boolean's two spellings of true
_CONTAINERS = frozenset(
    {
        "Validity",
        "Importer",
        "Exporter",
        "Lines",
        "ImportAuthorizationRef",
        "ExportAuthorizationRef",
        "Cancels",
    }
)
"""The document root's children that hold elements rather than a text."""
Children = dict[str, etree._Element]
Texts = dict[str, str]


def _children(element: etree._Element | None) -> tuple[Children, Texts]:
    found: Children = {}
    texts: Texts = {}
    if element is None:
        return found, texts
    for child in element:
        tag = child.tag
        if tag.__class__ is str:  # comments and processing instructions are not
            name = tag[_NS_LEN:]
            found[name] = child
            text = child.text
            texts[name] = text.strip() if text else ""
    return found, texts


def _date(value: str) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


def _decimal(value: str) -> Decimal:
    try:
        return Decimal(value)
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {value!r}") from exc


def _party(element: etree._Element | None) -> Party | None:
    if element is None:
        return None
    # One walk over the party and its address: their element names do not repeat.
    texts: Texts = {}
    streets: list[str] = []
    for child in element.iter():
        tag = child.tag
        if tag.__class__ is not str:
            continue
        text = child.text
        text = text.strip() if text else ""
        if tag == _STREET:
            streets.append(text)
        else:
            texts[tag[_NS_LEN:]] = text
    return Party(
        name=texts.get("Name", ""),
        street=tuple(streets),
        city=texts.get("City", ""),
        postal_code=texts.get("PostalCode", ""),
        country=texts.get("Country", ""),
        licence=texts.get("LicenceNumber", ""),
    )


def _measure(element: etree._Element | None) -> tuple[Decimal, str] | None:
    if element is None:
        return None
    return _decimal((element.text or "").strip()), element.get("unit", "")


def _lines(container: etree._Element | None, received: bool) -> tuple[Line, ...]:
    if container is None:
        return ()
    lines = []
    quantity_name = "QuantityReceived" if received else "Quantity"
    for el in container:
        if el.tag.__class__ is not str:
            continue
        f, texts = _children(el)
        qty, unit = _measure(f.get(quantity_name)) or (Decimal(0), "")
        base = _measure(f.get("BaseQuantity"))
        lines.append(
            Line(
                number=int(el.get("number", "0")),
                substance=texts.get("Substance", ""),
                form=texts.get("Form", ""),
                quantity=qty,
                unit=unit,
                convention=texts.get("Convention", ""),
                schedule=texts.get("Schedule", ""),
                pharmaceutical_form=texts.get("PharmaceuticalForm", ""),
                preparation=texts.get("PreparationName", ""),
                strength=_measure(f.get("StrengthPerUnit")),
                base_quantity=base[0] if base else None,
            )
        )
    return tuple(lines)


def _ref(doc_type: DocType, fields: Children) -> Ref | None:
    if doc_type is DocType.EXPORT_AUTHORIZATION:
        ia = fields.get("ImportAuthorizationRef")
        if ia is None:
            return None
        t = _children(ia)[1]
        return Ref(
            DocType.IMPORT_AUTHORIZATION,
            t.get("Number", ""),
            t.get("IssuingCountry", ""),
            _date(t.get("IssueDate", "")),
            t.get("IssuingAuthority", ""),
        )
    if doc_type is DocType.ENDORSEMENT:
        t = _children(fields.get("ExportAuthorizationRef"))[1]
        return Ref(
            DocType.EXPORT_AUTHORIZATION,
            t.get("Number", ""),
            t.get("IssuingCountry", ""),
        )
    if doc_type is DocType.CANCELLATION:
        t = _children(fields.get("Cancels"))[1]
        return Ref(
            DocType(t.get("Type", "")), t.get("Number", ""), t.get("IssuingCountry", "")
        )
    return None


def read_document(root: etree._Element) -> Document:
    """Read a schema-valid canonical document element into a :class:`Document`.

    Raises:
        ValueError: the element is not one of the canonical document roots.
    """
    doc_type = ROOTS.get(root.tag)
    if doc_type is None:
        raise ValueError(f"not a canonical document: {root.tag}")
    # The root's children in one loop: the containers kept, the others' texts read.
    f: Children = {}
    t: Texts = {}
    for child in root:
        tag = child.tag
        if tag.__class__ is str:
            name = tag[_NS_LEN:]
            if name in _CONTAINERS:
                f[name] = child
            else:
                value = child.text
                t[name] = value.strip() if value else ""
    validity = _children(f.get("Validity"))[1]
    text = t.get
    return Document(
        doc_type=doc_type,
        number=text("DocumentNumber", ""),
        issuer=text("IssuingCountry", ""),
        authority=text("IssuingAuthority", ""),
        issue_date=dt.date.fromisoformat(text("IssueDate", "")),
        lines=_lines(f.get("Lines"), received=doc_type is DocType.ENDORSEMENT),
        validity_from=_date(validity.get("From", "")),
        validity_until=_date(validity.get("Until", "")),
        importer=_party(f.get("Importer")),
        exporter=_party(f.get("Exporter")),
        multiple_consignments=text("MultipleConsignments") in _TRUE,
        bonded_warehouse=text("BondedWarehouse") in _TRUE,
        special_import_licence=text("SpecialImportLicence", ""),
        emergency=text("Emergency") in _TRUE,
        ref=_ref(doc_type, f),
        expected_dispatch=_date(text("ExpectedDispatchDate", "")),
        dispatch_date=_date(text("DispatchDate", "")),
        endorsing_authority=text("EndorsingAuthority", ""),
        receipt_date=_date(text("ReceiptDate", "")),
        expired_without_import=_date(text("ExpiredWithoutImport", "")),
        reason=text("Reason", ""),
        remarks=text("Remarks", ""),
        source_line=root.sourceline,
    )


def content_hash(element: etree._Element) -> str:
    """Digest of a document's canonical form (C14N, blank text dropped at parse).

    Equal digests mean a duplicate; layout and namespace prefixes do not count.
    """
    # Exclusive C14N: inclusive C14N of a batch child adds xmlns="" to some of its
    # descendants, so the same document alone and in a batch would differ.
    canonical_form = etree.tostring(element, method="c14n", exclusive=True)
    return hashlib.sha256(canonical_form).hexdigest()


def identity_of(root: etree._Element) -> tuple[str, str, str] | None:
    """(type, issuer, number) read leniently from any element, for error reports."""
    doc_type = ROOTS.get(root.tag)
    if doc_type is None:
        return None
    t = _children(root)[1]
    return doc_type.value, t.get("IssuingCountry", ""), t.get("DocumentNumber", "")
