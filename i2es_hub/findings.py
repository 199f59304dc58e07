"""Findings: what the rules say about a document, as data.

A finding has a stable code, a severity, the line it concerns (if any) and a message
that names the document and the numbers involved. Severity decides the outcome:
``error`` rejects, ``warning`` lets through flagged, ``info`` is a note, ``alert`` is
routed to the country concerned as its own message.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from i2es_hub.pickling import by_fields


class Severity(StrEnum):
    """How much a finding weighs."""

    ERROR = "error"
    WARNING = "warning"
    HOLD = "hold"
    INFO = "info"
    ALERT = "alert"


class Code(StrEnum):
    """The finding codes the hub publishes (DESIGN.md section 3)."""

    SCHEMA_INVALID = "SCHEMA_INVALID"
    MAPPING_FAILED = "MAPPING_FAILED"
    UNSAFE_XML = "UNSAFE_XML"
    MISSING_TREATY_FIELD = "MISSING_TREATY_FIELD"
    INVALID_PERIOD = "INVALID_PERIOD"
    UNKNOWN_SUBSTANCE = "UNKNOWN_SUBSTANCE"
    SENDER_NOT_ISSUER = "SENDER_NOT_ISSUER"
    IMPORT_AUTHORIZATION_NOT_FOUND = "IMPORT_AUTHORIZATION_NOT_FOUND"
    IMPORT_AUTHORIZATION_MISMATCH = "IMPORT_AUTHORIZATION_MISMATCH"
    IMPORT_AUTHORIZATION_EXHAUSTED = "IMPORT_AUTHORIZATION_EXHAUSTED"
    OUTSIDE_VALIDITY = "OUTSIDE_VALIDITY"
    EXCESS_ESTIMATE = "EXCESS_ESTIMATE"
    EXCESS_ASSESSMENT = "EXCESS_ASSESSMENT"
    NO_ESTIMATE = "NO_ESTIMATE"
    IMPORT_PROHIBITED = "IMPORT_PROHIBITED"
    BONDED_WAREHOUSE_FORBIDDEN = "BONDED_WAREHOUSE_FORBIDDEN"
    POST_BOX_CONSIGNEE = "POST_BOX_CONSIGNEE"
    EMERGENCY_EXPORT = "EMERGENCY_EXPORT"
    DUPLICATE = "DUPLICATE"
    AMENDED = "AMENDED"
    SHORTFALL = "SHORTFALL"
    EXCESS_RECEIPT = "EXCESS_RECEIPT"
    EXPIRED_UNENDORSED = "EXPIRED_UNENDORSED"
    EXPORT_AUTHORIZATION_NOT_FOUND = "EXPORT_AUTHORIZATION_NOT_FOUND"
    CANCELLED_DOCUMENT_NOT_FOUND = "CANCELLED_DOCUMENT_NOT_FOUND"
    ALREADY_ENDORSED = "ALREADY_ENDORSED"
    DOCUMENT_CLOSED = "DOCUMENT_CLOSED"


SEVERITY: dict[Code, Severity] = {
    Code.SCHEMA_INVALID: Severity.ERROR,
    Code.MAPPING_FAILED: Severity.ERROR,
    Code.UNSAFE_XML: Severity.ERROR,
    Code.MISSING_TREATY_FIELD: Severity.ERROR,
    Code.INVALID_PERIOD: Severity.ERROR,
    Code.UNKNOWN_SUBSTANCE: Severity.ERROR,
    Code.SENDER_NOT_ISSUER: Severity.ERROR,
    Code.IMPORT_AUTHORIZATION_NOT_FOUND: Severity.WARNING,
    Code.IMPORT_AUTHORIZATION_MISMATCH: Severity.ERROR,
    Code.IMPORT_AUTHORIZATION_EXHAUSTED: Severity.WARNING,
    Code.OUTSIDE_VALIDITY: Severity.WARNING,
    Code.EXCESS_ESTIMATE: Severity.WARNING,
    Code.EXCESS_ASSESSMENT: Severity.WARNING,
    Code.NO_ESTIMATE: Severity.WARNING,
    Code.IMPORT_PROHIBITED: Severity.ERROR,
    Code.BONDED_WAREHOUSE_FORBIDDEN: Severity.ERROR,
    Code.POST_BOX_CONSIGNEE: Severity.ERROR,
    Code.EMERGENCY_EXPORT: Severity.WARNING,
    Code.DUPLICATE: Severity.INFO,
    Code.AMENDED: Severity.INFO,
    Code.SHORTFALL: Severity.ALERT,
    Code.EXCESS_RECEIPT: Severity.ALERT,
    Code.EXPIRED_UNENDORSED: Severity.ALERT,
    Code.EXPORT_AUTHORIZATION_NOT_FOUND: Severity.WARNING,
    Code.CANCELLED_DOCUMENT_NOT_FOUND: Severity.ERROR,
    Code.ALREADY_ENDORSED: Severity.WARNING,
    Code.DOCUMENT_CLOSED: Severity.ERROR,
}
_STORED = {code: (code.value, severity.value) for code, severity in SEVERITY.items()}
"""Each code's (code, severity) as stored, read once (an enum's value is a lookup)."""


@by_fields
@dataclass(slots=True)
class Finding:
    """One thing a rule found about a document.

    Attributes:
        code: The stable finding code.
        severity: error, warning, hold, info or alert.
        message: Names the document, the line and the numbers involved.
        line: The document line (1-based) it concerns, if any.
        path: Where in the XML, for schema findings.
        source_line: Line number in the received file, for schema findings.
        figures: The numbers behind the finding, by name (grams, dates).
    """

    code: str
    severity: str
    message: str
    line: int | None = None
    path: str | None = None
    source_line: int | None = None
    figures: dict[str, Any] | None = None

    @classmethod
    def of(cls, code: Code, message: str, **kwargs: Any) -> Finding:
        """Build a finding with the code's published severity."""
        code_value, severity = _STORED[code]
        return cls(code=code_value, severity=severity, message=message, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON output and storage, without empty keys."""
        out: dict[str, Any] = {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
        }
        if self.line is not None:
            out["line"] = self.line
        if self.path is not None:
            out["path"] = self.path
        if self.source_line is not None:
            out["source_line"] = self.source_line
        if self.figures is not None:
            out["figures"] = dict(self.figures)
        return out


def is_rejecting(findings: list[Finding]) -> bool:
    """True when any finding is an error."""
    return has_severity(findings, Severity.ERROR)


def has_severity(findings: list[Finding], severity: Severity) -> bool:
    """True when any finding has ``severity``.

    A loop, not ``any()`` over a generator: the commit stage asks this several
    times for every document, most often of one or two findings.
    """
    for f in findings:  # noqa: SIM110 (see the docstring)
        if f.severity == severity:
            return True
    return False
