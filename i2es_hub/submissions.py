"""What goes into the ingest pipeline and what comes out, per document."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from i2es_hub.canonical import Document
from i2es_hub.findings import Finding
from i2es_hub.pickling import by_fields

Identity = tuple[str, str, str]  # (issuer, doc_type, number)


@by_fields
@dataclass(slots=True)
class Submission:
    """Bytes received from a sender, with where they came from.

    Attributes:
        data: Canonical XML: one document or a Batch.
        sender: The country the channel authenticated (not what the bytes claim).
        channel: cli, api, or the connector name.
        source: File name or request id, for the audit trail and messages.
        original: The bytes as received when ``data`` is a mapping's output.
    """

    data: bytes
    sender: str
    channel: str = "cli"
    source: str = ""
    original: bytes | None = None


@dataclass(slots=True)
class Result:
    """What happened to one document."""

    outcome: str
    findings: list[Finding]
    source: str
    doc_type: str | None = None
    issuer: str | None = None
    number: str | None = None
    deliveries: list[str] = field(default_factory=list)
    message_id: str | None = None
    document_id: str | None = None
    quarantine_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The CLI's and API's JSON form of the result."""
        out: dict[str, Any] = {
            "document": {
                "type": self.doc_type,
                "number": self.number,
                "issuer": self.issuer,
            },
            "outcome": self.outcome,
            "findings": [
                {
                    "code": f.code,
                    "severity": f.severity,
                    "line": f.line,
                    "message": f.message,
                }
                for f in self.findings
            ],
            "deliveries": self.deliveries,
            "source": self.source,
        }
        if self.message_id:
            out["message_id"] = self.message_id
        if self.quarantine_id:
            out["quarantine_id"] = self.quarantine_id
        return out


@by_fields
@dataclass(slots=True)
class Candidate:
    """A document after the prepare stage."""

    submission: Submission
    original: bytes
    canonical: bytes
    findings: list[Finding]
    doc: Document | None = None
    bases: dict[int, Decimal] = field(default_factory=dict)
    identity_hint: tuple[str, str, str] | None = None
    digest: str = ""
    # False while the document rules have not run (prepared before the reference
    # lists were known; see prepare.PrepareProcess)
    checked: bool = True

    @property
    def identity(self) -> Identity | None:
        """(issuer, type, number), once the document could be read."""
        if self.doc is None:
            return None
        return (self.doc.issuer, self.doc.doc_type.value, self.doc.number)
