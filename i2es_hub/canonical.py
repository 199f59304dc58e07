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
        line = (
            getattr(error.elem, "sourceline", None) if error.elem is not None else None
        )
        findings.append(
            Finding.of(
                Code.SCHEMA_INVALID,
                f"{label}: {error.reason or error.message} (at {error.path}, line {line})",
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


@dataclass(frozen=True, slots=True)
class Party:
    """An importer or exporter: name, full address, country."""

    name: str
    street: tuple[str, ...]
    city: str
    postal_code: str
    country: str
    licence: str = ""


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class Ref:
    """A reference to another document, as quoted by the sender."""

    doc_type: DocType
    number: str
    country: str
    issue_date: dt.date | None = None
    authority: str = ""


@dataclass(frozen=True, slots=True)
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
    source_line: int | None = field(default=None, compare=False)

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

    def content_hash(self) -> str:
        """Digest of the content, blind to layout: equal hash means a duplicate."""
        return hashlib.sha256(
            repr(replace(self, source_line=None)).encode()
        ).hexdigest()

    def with_base_quantities(self, bases: dict[int, Decimal]) -> Document:
        """A copy whose lines carry the computed base quantities."""
        lines = tuple(
            replace(line, base_quantity=bases.get(line.number, line.base_quantity))
            for line in self.lines
        )
        return replace(self, lines=lines)


# ----- reading validated XML into the model -------------------------------------


def _text(element: etree._Element | None, name: str) -> str:
    if element is None:
        return ""
    child = element.find(q(name))
    return (child.text or "").strip() if child is not None else ""


def _date(element: etree._Element | None, name: str) -> dt.date | None:
    value = _text(element, name)
    return dt.date.fromisoformat(value) if value else None


def _bool(element: etree._Element, name: str) -> bool:
    return _text(element, name) in ("true", "1")


def _decimal(value: str) -> Decimal:
    try:
        return Decimal(value)
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {value!r}") from exc


def _party(element: etree._Element | None) -> Party | None:
    if element is None:
        return None
    address = element.find(q("Address"))
    streets = (
        tuple((s.text or "").strip() for s in address.iterfind(q("Street")))
        if address is not None
        else ()
    )
    return Party(
        name=_text(element, "Name"),
        street=streets,
        city=_text(address, "City"),
        postal_code=_text(address, "PostalCode"),
        country=_text(address, "Country"),
        licence=_text(element, "LicenceNumber"),
    )


def _measure(element: etree._Element | None) -> tuple[Decimal, str] | None:
    if element is None:
        return None
    return _decimal((element.text or "").strip()), element.get("unit", "")


def _lines(root: etree._Element, received: bool) -> tuple[Line, ...]:
    lines = []
    container = root.find(q("Lines"))
    if container is None:
        return ()
    for el in container.iterfind(q("Line")):
        qty_el = el.find(q("QuantityReceived" if received else "Quantity"))
        qty, unit = _measure(qty_el) or (Decimal(0), "")
        base = _measure(el.find(q("BaseQuantity")))
        lines.append(
            Line(
                number=int(el.get("number", "0")),
                substance=_text(el, "Substance"),
                form=_text(el, "Form"),
                quantity=qty,
                unit=unit,
                convention=_text(el, "Convention"),
                schedule=_text(el, "Schedule"),
                pharmaceutical_form=_text(el, "PharmaceuticalForm"),
                preparation=_text(el, "PreparationName"),
                strength=_measure(el.find(q("StrengthPerUnit"))),
                base_quantity=base[0] if base else None,
            )
        )
    return tuple(lines)


def read_document(root: etree._Element) -> Document:
    """Read a schema-valid canonical document element into a :class:`Document`.

    Raises:
        ValueError: the element is not one of the canonical document roots.
    """
    doc_type = ROOTS.get(root.tag)
    if doc_type is None:
        raise ValueError(f"not a canonical document: {root.tag}")
    validity = root.find(q("Validity"))
    ref: Ref | None = None
    if doc_type is DocType.EXPORT_AUTHORIZATION:
        ia = root.find(q("ImportAuthorizationRef"))
        if ia is not None:
            ref = Ref(
                DocType.IMPORT_AUTHORIZATION,
                _text(ia, "Number"),
                _text(ia, "IssuingCountry"),
                _date(ia, "IssueDate"),
                _text(ia, "IssuingAuthority"),
            )
    elif doc_type is DocType.ENDORSEMENT:
        ea = root.find(q("ExportAuthorizationRef"))
        ref = Ref(
            DocType.EXPORT_AUTHORIZATION,
            _text(ea, "Number"),
            _text(ea, "IssuingCountry"),
        )
    elif doc_type is DocType.CANCELLATION:
        target = root.find(q("Cancels"))
        ref = Ref(
            DocType(_text(target, "Type")),
            _text(target, "Number"),
            _text(target, "IssuingCountry"),
        )
    return Document(
        doc_type=doc_type,
        number=_text(root, "DocumentNumber"),
        issuer=_text(root, "IssuingCountry"),
        authority=_text(root, "IssuingAuthority"),
        issue_date=dt.date.fromisoformat(_text(root, "IssueDate")),
        lines=_lines(root, received=doc_type is DocType.ENDORSEMENT),
        validity_from=_date(validity, "From"),
        validity_until=_date(validity, "Until"),
        importer=_party(root.find(q("Importer"))),
        exporter=_party(root.find(q("Exporter"))),
        multiple_consignments=_bool(root, "MultipleConsignments"),
        bonded_warehouse=_bool(root, "BondedWarehouse"),
        special_import_licence=_text(root, "SpecialImportLicence"),
        emergency=_bool(root, "Emergency"),
        ref=ref,
        expected_dispatch=_date(root, "ExpectedDispatchDate"),
        dispatch_date=_date(root, "DispatchDate"),
        endorsing_authority=_text(root, "EndorsingAuthority"),
        receipt_date=_date(root, "ReceiptDate"),
        expired_without_import=_date(root, "ExpiredWithoutImport"),
        reason=_text(root, "Reason"),
        remarks=_text(root, "Remarks"),
        source_line=root.sourceline,
    )


def identity_of(root: etree._Element) -> tuple[str, str, str] | None:
    """(type, issuer, number) read leniently from any element, for error reports."""
    doc_type = ROOTS.get(root.tag)
    if doc_type is None:
        return None
    return doc_type.value, _text(root, "IssuingCountry"), _text(root, "DocumentNumber")
