"""The commit stage of ingest: one write transaction per batch.

:class:`BatchWriter` looks up what is stored (duplicate or amendment), applies the
rules that compare with stored documents and the estimate ledger, and writes the
document, its version, lines, audit trail, alerts and one outbox row per recipient
together. Rejected input goes to quarantine with its original bytes in the same
transaction. Operator steps (held decisions, expiry) reuse it.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from lxml import etree
from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.engine import Connection

from i2es_hub import canonical, store, xmlsafe
from i2es_hub.canonical import DocType, Document
from i2es_hub.findings import Code, Finding, Severity, has_severity, is_rejecting
from i2es_hub.ledger import Ledger
from i2es_hub.reference import reference_for
from i2es_hub.rules import (
    StoredAuthorization,
    endorsement_findings,
    reference_findings,
)
from i2es_hub.submissions import Candidate, Identity, Result

if TYPE_CHECKING:
    from i2es_hub.ingest import Pipeline

log = logging.getLogger(__name__)

ACTIVE_STATES = ("accepted", "amended", "endorsed")
EXPORT_AUTHORIZATION = DocType.EXPORT_AUTHORIZATION.value

# Rows are built as tuples (lists for documents, which a later state change in the
# batch may update) in these column orders: no dictionary to build and take apart
# again per row (store.insert_tuples).
DOCUMENT_VALUES = (
    "state",
    "version",
    "content_hash",
    "issue_date",
    "validity_from",
    "validity_until",
    "importer_country",
    "exporter_country",
    "ref_type",
    "ref_number",
    "ref_country",
    "linked_id",
    "emergency",
    "sender",
    "channel",
    "updated_at",
)
"""The columns a new version sets (an amendment updates the stored row with them)."""
DOCUMENT_COLUMNS = (
    "id",
    "doc_type",
    "issuer",
    "number",
    "created_at",
    *DOCUMENT_VALUES,
)
_DOCUMENT_INDEX = {name: i for i, name in enumerate(DOCUMENT_COLUMNS)}
VERSION_COLUMNS = (
    "document_id",
    "version",
    "message_id",
    "content_hash",
    "outcome",
    "original",
    "canonical",
    "findings",
    "sender",
    "channel",
    "source",
    "received_at",
)
LINE_COLUMNS = (
    "document_id",
    "version",
    "line_no",
    "substance",
    "form",
    "quantity",
    "unit",
    "base_grams",
)
AUDIT_COLUMNS = (
    "at",
    "document_id",
    "version",
    "from_state",
    "to_state",
    "actor",
    "reason",
)
DELIVERY_COLUMNS = (
    "id",
    "recipient",
    "kind",
    "document_id",
    "version",
    "alert_id",
    "state",
    "attempts",
    "next_attempt_at",
    "last_error",
    "created_at",
    "updated_at",
    "delivered_at",
    "acknowledged_at",
)
# The batch's look-ups, built once for SQLite and once for other databases
# (store.in_list): the numbers are bound at execution as one list, never coerced
# value by value into literals as a list given to ``in_()`` is.
_BY_NUMBER = {
    sqlite: select(store.documents).where(
        store.in_list(store.documents.c.number, "numbers", sqlite=sqlite)
    )
    for sqlite in (True, False)
}
# "linked_id IS NULL" stays out of the WHERE clause: that test is made in Python
# on the few rows found by ref_number, never by an index over the unlinked.
_QUOTING = {
    sqlite: select(
        store.documents.c.id,
        store.documents.c.ref_country,
        store.documents.c.ref_number,
        store.documents.c.linked_id,
    )
    .where(
        store.documents.c.ref_type == DocType.IMPORT_AUTHORIZATION.value,
        store.in_list(store.documents.c.ref_number, "numbers", sqlite=sqlite),
        store.documents.c.state.in_(ACTIVE_STATES),
    )
    .order_by(store.documents.c.created_at)
    for sqlite in (True, False)
}


@dataclass(slots=True)
class DocRow:
    """The stored state of a document that the commit stage works with."""

    id: str
    doc_type: str
    issuer: str
    number: str
    state: str
    version: int
    content_hash: str
    importer_country: str | None
    exporter_country: str | None
    ref_number: str | None = None
    ref_country: str | None = None
    linked_id: str | None = None
    emergency: bool = False
    authorization: StoredAuthorization | None = None
    new: bool = False

    @property
    def identity(self) -> Identity:
        """(issuer, type, number)."""
        return (self.issuer, self.doc_type, self.number)


def recipients_of(
    doc_type: str, issuer: str, importer: str | None, exporter: str | None
) -> list[str]:
    """Who receives a document (DESIGN.md section 2), never its own issuer."""
    countries: tuple[str | None, ...]
    if doc_type == DocType.IMPORT_AUTHORIZATION:
        countries = (exporter,)
    elif doc_type in (DocType.EXPORT_AUTHORIZATION, DocType.EXPORT_DECLARATION):
        countries = (importer,)
    elif doc_type == DocType.ENDORSEMENT:
        countries = (exporter,)
    else:
        countries = (importer, exporter)
    found = [c for c in countries if c and c != issuer]
    return found if len(found) < 2 else sorted(set(found))


class BatchWriter:
    """One write transaction's worth of candidates."""

    def __init__(
        self, conn: Connection, pipeline: Pipeline, candidates: list[Candidate]
    ) -> None:
        self.conn = conn
        self.pipeline = pipeline
        self.candidates = candidates
        self.now = store.utcnow()
        self.known: dict[Identity, DocRow] = {}
        self.by_id: dict[str, DocRow] = {}
        self.drawn: dict[str, dict[str, Decimal]] = {}
        self.rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.documents: dict[str, list[Any]] = {}  # new documents' rows, by id
        self.versions: list[tuple[Any, ...]] = []
        self.lines: list[tuple[Any, ...]] = []
        self.audits: list[tuple[Any, ...]] = []
        self.deliveries: list[tuple[Any, ...]] = []
        self.dirty: dict[str, dict[str, Any]] = {}
        self.links: list[dict[str, Any]] = []
        self.waiting_exports: dict[tuple[str, str], list[str]] = defaultdict(list)
        references = pipeline.references
        self.ledger = Ledger(
            conn,
            self.now,
            lambda name, day: (
                ref.substance(name) if (ref := reference_for(references, day)) else None
            ),
        )

    # ----- lookups --------------------------------------------------------------

    @staticmethod
    def _wanted(docs: Iterable[Document]) -> set[Identity]:
        wanted: set[Identity] = set()
        for doc in docs:
            wanted.add((doc.issuer, doc.doc_type.value, doc.number))
            if doc.ref is not None:
                ref = doc.ref
                wanted.add((ref.country, ref.doc_type.value, ref.number))
        return wanted

    def load_identities(self, docs: Iterable[Document] | None = None) -> None:
        """Load the stored rows of the batch's documents and of those they quote."""
        if docs is None:
            docs = [c.doc for c in self.candidates if c.doc is not None]
        wanted = self._wanted(docs)
        numbers = sorted({number for _, _, number in wanted})
        by_number = _BY_NUMBER[self.conn.dialect.name == "sqlite"]
        # By number alone (indexed), then the identity in Python: a row-value IN
        # over three columns is not an index lookup on every database.
        for start in range(0, len(numbers), 400):
            chunk = numbers[start : start + 400]
            rows = self.conn.execute(by_number, {"numbers": chunk}).mappings()
            for row in rows:
                identity = (row["issuer"], row["doc_type"], row["number"])
                if row["id"] in self.by_id or identity not in wanted:
                    continue
                self.remember(
                    DocRow(
                        id=row["id"],
                        doc_type=row["doc_type"],
                        issuer=row["issuer"],
                        number=row["number"],
                        state=row["state"],
                        version=row["version"],
                        content_hash=row["content_hash"],
                        importer_country=row["importer_country"],
                        exporter_country=row["exporter_country"],
                        ref_number=row["ref_number"],
                        ref_country=row["ref_country"],
                        linked_id=row["linked_id"],
                        emergency=row["emergency"],
                    )
                )

    def remember(self, row: DocRow) -> None:
        """Make a stored (or newly stored) document known to the batch."""
        self.known[row.identity] = row
        self.by_id[row.id] = row
        if (
            row.new
            and row.doc_type == EXPORT_AUTHORIZATION
            and row.ref_number
            and row.linked_id is None
        ):
            # an export authorization waiting for its import authorization
            key = (str(row.ref_country), row.ref_number)
            self.waiting_exports[key].append(row.id)

    def authorization(self, row: DocRow) -> StoredAuthorization:
        """The stored document behind ``row``, read from its canonical bytes."""
        if row.authorization is None:
            v = store.document_versions
            stored = self.conn.execute(
                select(v.c.canonical, v.c.original).where(
                    and_(v.c.document_id == row.id, v.c.version == row.version)
                )
            ).one()
            data = stored.canonical or stored.original
            doc = canonical.read_document(xmlsafe.parse(data))
            lines = store.document_lines
            bases = {
                r.line_no: Decimal(r.base_grams or 0)
                for r in self.conn.execute(
                    select(lines.c.line_no, lines.c.base_grams).where(
                        and_(
                            lines.c.document_id == row.id,
                            lines.c.version == row.version,
                        )
                    )
                )
            }
            row.authorization = StoredAuthorization(row.id, doc, bases)
        return row.authorization

    def _drawn_on(self, ia_id: str) -> dict[str, Decimal]:
        """Base grams per substance already exported under an import authorization."""
        if ia_id not in self.drawn:
            d, lines = store.documents, store.document_lines
            query = (
                select(lines.c.substance, func.sum(lines.c.base_grams))
                .join(
                    d,
                    and_(d.c.id == lines.c.document_id, d.c.version == lines.c.version),
                )
                .where(
                    d.c.linked_id == ia_id,
                    d.c.doc_type == DocType.EXPORT_AUTHORIZATION.value,
                    d.c.state.in_(ACTIVE_STATES),
                )
                .group_by(lines.c.substance)
            )
            self.drawn[ia_id] = {
                s.lower(): Decimal(g or 0) for s, g in self.conn.execute(query)
            }
        return self.drawn[ia_id]

    # ----- the run ----------------------------------------------------------------

    def run(self) -> list[Result]:
        """Check, store and route every candidate; one result each, in order."""
        self.load_identities()
        docs = [c.doc for c in self.candidates if c.doc is not None]
        self.ledger.prepare(docs, self.ledger_documents(docs))
        results = [self._one(c) for c in self.candidates]
        self.flush()
        return results

    def _one(self, c: Candidate) -> Result:
        sub = c.submission
        if c.doc is None:
            return self._reject(c, c.findings)
        doc = c.doc
        findings = list(c.findings)
        if doc.issuer != sub.sender:
            findings.append(
                Finding.of(
                    Code.SENDER_NOT_ISSUER,
                    f"{doc.label}: submitted by {sub.sender} through {sub.channel}, "
                    f"but issued by {doc.issuer}; a country may submit only its own "
                    "documents",
                )
            )
        if is_rejecting(findings):
            return self._reject(c, findings)

        identity = c.identity
        existing = self.known.get(identity) if identity else None
        digest = c.digest
        if existing is not None and existing.content_hash == digest:
            return Result(
                "duplicate",
                [
                    Finding.of(
                        Code.DUPLICATE,
                        f"{doc.label}: same content as version {existing.version} "
                        "received before; nothing changed",
                    )
                ],
                sub.source,
                doc.doc_type.value,
                doc.issuer,
                doc.number,
                document_id=existing.id,
            )
        if existing is not None and existing.state in ("cancelled", "rejected"):
            return self._reject(
                c,
                findings
                + [
                    Finding.of(
                        Code.DOCUMENT_CLOSED,
                        f"{doc.label}: is {existing.state}; a {existing.state} "
                        "document cannot be amended (issue a new document number)",
                    )
                ],
            )

        findings += self._stateful(doc, c.bases, existing)
        if is_rejecting(findings):
            return self._reject(c, findings)
        if existing is not None:
            findings.append(
                Finding.of(
                    Code.AMENDED,
                    f"{doc.label}: content differs from version {existing.version}; "
                    f"stored as version {existing.version + 1}",
                )
            )
        doc_id = existing.id if existing else store.new_id()
        plan = self.ledger_plan(doc, doc_id, c.bases, existing)
        findings += plan.findings
        if is_rejecting(findings):
            return self._reject(c, findings)
        findings = self.pipeline.policy.apply(doc.issuer, findings)
        held = has_severity(findings, Severity.HOLD)
        result = self._store(c, findings, existing, digest, held, doc_id)
        if not held:  # held documents have no effect on the ledger until released
            self.ledger.execute(plan)
        return result

    # ----- the ledger ---------------------------------------------------------------

    def ledger_documents(self, docs: list[Document]) -> set[str]:
        """Stored documents whose holdings this batch may change."""
        ids: set[str] = set()
        for doc in docs:
            row = self.known.get((doc.issuer, doc.doc_type.value, doc.number))
            if row is not None:
                ids.add(row.id)
            if doc.ref is not None:
                ref = doc.ref
                target = self.known.get((ref.country, ref.doc_type.value, ref.number))
                if target is not None:
                    ids.add(target.id)
        ias = [
            (d.issuer, d.number)
            for d in docs
            if d.doc_type is DocType.IMPORT_AUTHORIZATION
        ]
        quoted = set(ias)
        numbers = sorted({number for _, number in quoted})
        quoting = _QUOTING[self.conn.dialect.name == "sqlite"]
        for start in range(0, len(numbers), 400):
            chunk = numbers[start : start + 400]
            # by ref_number (indexed): only the documents quoting these numbers
            rows = self.conn.execute(quoting, {"numbers": chunk})
            for waiting in rows:
                key = (str(waiting.ref_country), str(waiting.ref_number))
                if waiting.linked_id is not None or key not in quoted:
                    continue
                self.waiting_exports[key].append(waiting.id)
                ids.add(waiting.id)
        return ids

    def ledger_plan(
        self,
        doc: Document,
        doc_id: str,
        bases: dict[int, Decimal],
        existing: DocRow | None,
    ) -> Any:
        """Check a document against the ledger; the plan applies if accepted."""
        ref = doc.ref
        target = (
            self.known.get((ref.country, ref.doc_type.value, ref.number))
            if ref
            else None
        )
        target_id = None
        if target is not None and (
            doc.doc_type is not DocType.EXPORT_AUTHORIZATION
            or target.state in ACTIVE_STATES
        ):
            target_id = target.id
        if doc.doc_type is DocType.IMPORT_AUTHORIZATION:
            waiting = self.waiting_exports.get((doc.issuer, doc.number))
            self.ledger.waiting = (
                {doc_id: list(dict.fromkeys(waiting))} if waiting else {}
            )
        return self.ledger.plan(
            doc, doc_id, bases, existing.id if existing else None, target_id
        )

    def _stateful(
        self, doc: Document, bases: dict[int, Decimal], existing: DocRow | None
    ) -> list[Finding]:
        ref = doc.ref
        if ref is None:
            return []
        target = self.known.get((ref.country, ref.doc_type.value, ref.number))
        if doc.doc_type is DocType.EXPORT_AUTHORIZATION:
            if doc.emergency:
                return []
            ia = (
                self.authorization(target)
                if target and target.state in ACTIVE_STATES
                else None
            )
            drawn = dict(self._drawn_on(target.id)) if target else {}
            if existing is not None and target and existing.linked_id == target.id:
                # an amendment replaces its own earlier draw
                previous = self.authorization(existing)
                for substance, grams in previous.totals().items():
                    drawn[substance] = drawn.get(substance, Decimal(0)) - grams
            return reference_findings(doc, bases, ia, drawn)
        if doc.doc_type is DocType.ENDORSEMENT:
            ea = self.authorization(target) if target else None
            findings = endorsement_findings(doc, bases, ea)
            if target and target.state == "endorsed" and existing is None:
                findings.append(
                    Finding.of(
                        Code.ALREADY_ENDORSED,
                        f"{doc.label}: export authorization {ref.country}/"
                        f"{ref.number} was endorsed before; this endorsement replaces "
                        "the earlier one",
                    )
                )
            return findings
        if doc.doc_type is DocType.CANCELLATION:
            if ref.country != doc.issuer:
                return [
                    Finding.of(
                        Code.SENDER_NOT_ISSUER,
                        f"{doc.label}: cancels {ref.doc_type.value} {ref.country}/"
                        f"{ref.number}, issued by another country; a country may "
                        "cancel only its own documents",
                    )
                ]
            if target is None or target.state not in ACTIVE_STATES + ("held",):
                state = target.state if target else "never received"
                return [
                    Finding.of(
                        Code.CANCELLED_DOCUMENT_NOT_FOUND,
                        f"{doc.label}: {ref.doc_type.value} {ref.country}/{ref.number} "
                        f"cannot be cancelled ({state}); check the type and number",
                    )
                ]
        return []

    # ----- writing ------------------------------------------------------------------

    def _reject(self, c: Candidate, findings: list[Finding]) -> Result:
        sub = c.submission
        digest = hashlib.sha256(c.original).hexdigest()
        q = store.quarantine
        quarantine_id = self.conn.execute(
            select(q.c.id).where(
                q.c.sender == sub.sender,
                q.c.content_hash == digest,
                q.c.state == "quarantined",
            )
        ).scalar()
        pending = next(
            (
                r["id"]
                for r in self.rows["quarantine"]
                if r["sender"] == sub.sender and r["content_hash"] == digest
            ),
            None,
        )
        quarantine_id = quarantine_id or pending
        hint = c.identity or (
            (c.identity_hint[1], c.identity_hint[0], c.identity_hint[2])
            if c.identity_hint
            else None
        )
        doc_type = hint[1] if hint else None
        issuer = hint[0] if hint else None
        number = hint[2] if hint else None
        if quarantine_id is None:
            quarantine_id = store.new_id()
            self.rows["quarantine"].append(
                {
                    "id": quarantine_id,
                    "received_at": self.now,
                    "sender": sub.sender,
                    "channel": sub.channel,
                    "source": sub.source[:512],
                    "content_hash": digest,
                    "original": c.original,
                    "findings": [f.to_dict() for f in findings],
                    "doc_type": doc_type,
                    "issuer": (issuer or "")[:8] or None,
                    "number": (number or "")[:128] or None,
                    "state": "quarantined",
                    "replayed_at": None,
                }
            )
            self._audit(
                None,
                None,
                "received",
                "rejected",
                f"{sub.sender}/{sub.channel}",
                _codes(findings, f"quarantine {quarantine_id}"),
            )
        return Result(
            "rejected",
            findings,
            sub.source,
            doc_type,
            issuer,
            number,
            quarantine_id=quarantine_id,
        )

    def _store(
        self,
        c: Candidate,
        findings: list[Finding],
        existing: DocRow | None,
        digest: str,
        held: bool,
        doc_id: str,
    ) -> Result:
        doc = c.doc
        assert doc is not None
        sub = c.submission
        state = "held" if held else "accepted"
        version = existing.version + 1 if existing else 1
        ref = doc.ref
        target = (
            self.known.get((ref.country, ref.doc_type.value, ref.number))
            if ref
            else None
        )
        ref_number = ref.number if ref else None
        ref_country = ref.country if ref else None
        linked_id = target.id if target else None
        importer, exporter = doc.importing_country, doc.exporting_country
        values = (
            state,
            version,
            digest,
            doc.issue_date,
            doc.validity_from,
            doc.validity_until,
            importer,
            exporter,
            ref.doc_type.value if ref else None,
            ref_number,
            ref_country,
            linked_id,
            doc.emergency,
            sub.sender,
            sub.channel,
            self.now,
        )
        if existing is None:
            row = DocRow(
                doc_id,
                doc.doc_type.value,
                doc.issuer,
                doc.number,
                state,
                version,
                digest,
                importer,
                exporter,
                ref_number,
                ref_country,
                linked_id,
                doc.emergency,
                new=True,
            )
            self.remember(row)
            self.documents[doc_id] = [
                doc_id,
                row.doc_type,
                doc.issuer,
                doc.number,
                self.now,
                *values,
            ]
        else:
            row = existing
            row.state, row.version, row.content_hash = state, version, digest
            row.linked_id = linked_id
            self._change(row, dict(zip(DOCUMENT_VALUES, values, strict=True)))
        row.authorization = StoredAuthorization(doc_id, doc, c.bases)
        if doc.doc_type is DocType.EXPORT_AUTHORIZATION and target is not None:
            self.drawn.pop(target.id, None)  # recomputed with this draw in it

        message_id = store.new_id()
        self.versions.append(
            (
                doc_id,
                version,
                message_id,
                digest,
                "amended" if existing else state,
                c.original,
                # empty when the document arrived in canonical form: the original
                # bytes are then the canonical ones (half the bytes per version)
                b"" if c.canonical == c.original else c.canonical,
                [f.to_dict() for f in findings],
                sub.sender,
                sub.channel,
                sub.source[:512],
                self.now,
            )
        )
        bases = c.bases
        self.lines += [
            (
                doc_id,
                version,
                line.number,
                line.substance.lower(),
                line.form.lower(),
                line.quantity,
                line.unit,
                bases.get(line.number),
            )
            for line in doc.lines
        ]
        actor = f"{sub.sender}/{sub.channel}"
        self._audit(
            doc_id,
            version,
            existing.state if existing else "received",
            state,
            actor,
            _codes(findings),
        )
        if existing is not None and not held:
            self._audit(
                doc_id,
                version - 1,
                "accepted",
                "amended",
                actor,
                f"superseded by version {version}",
            )

        recipients: list[str] = []
        if not held:
            recipients = self.route(doc, doc_id, version, target, findings, actor)
            if (
                doc.doc_type is DocType.IMPORT_AUTHORIZATION
                and existing is None
                and self.waiting_exports.get((doc.issuer, doc.number))
            ):
                # export authorizations that came first (ledger_documents found
                # them) quote this import authorization: link them in flush
                self.links.append(
                    {"b_ia": doc_id, "b_country": doc.issuer, "b_number": doc.number}
                )
        outcome = "held" if held else ("amended" if existing else "accepted")
        return Result(
            outcome,
            findings,
            sub.source,
            doc.doc_type.value,
            doc.issuer,
            doc.number,
            recipients,
            message_id,
            doc_id,
        )

    def route(
        self,
        doc: Document,
        doc_id: str,
        version: int,
        target: DocRow | None,
        findings: list[Finding],
        actor: str,
    ) -> list[str]:
        """Outbox rows for the document and its alerts; state changes it causes."""
        if doc.doc_type is DocType.CANCELLATION and target is not None:
            recipients = recipients_of(
                target.doc_type,
                target.issuer,
                target.importer_country,
                target.exporter_country,
            )
            self.transition(target, "cancelled", actor, f"cancelled by {doc.number}")
            self.ledger.close(target.id, target.doc_type)
        else:
            recipients = recipients_of(
                doc.doc_type.value,
                doc.issuer,
                doc.importing_country,
                doc.exporting_country,
            )
        if (
            doc.doc_type is DocType.ENDORSEMENT
            and target is not None
            and target.state != "endorsed"
        ):
            self.transition(target, "endorsed", actor, f"endorsed by {doc.number}")
        for country in recipients:
            self._deliver(country, "document", doc_id, version)
        alerted: set[str] = set()
        for f in findings:
            alert_to = self._alert_country(doc, f)
            if alert_to is not None:
                self.alert(doc, doc_id, f, alert_to)
                alerted.add(alert_to)
        # recipients_of gives them sorted, each once
        return sorted(alerted.union(recipients)) if alerted else recipients

    @staticmethod
    def _alert_country(doc: Document, f: Finding) -> str | None:
        if f.severity == Severity.ALERT:
            return doc.exporting_country
        if (
            f.code in (Code.EXCESS_ESTIMATE, Code.EXCESS_ASSESSMENT)
            and doc.doc_type is DocType.EXPORT_AUTHORIZATION
        ):
            # the exporter learns at once that the importer's balance is exceeded
            return doc.exporting_country
        return None

    def alert(self, doc: Document, doc_id: str, f: Finding, country: str) -> None:
        """Store an alert for ``country`` and put it in the outbox."""
        alert_id = store.new_id()
        payload = render_alert(alert_id, f, country, doc, self.now)
        self.rows["alerts"].append(
            {
                "id": alert_id,
                "code": f.code,
                "country": country,
                "document_id": doc_id,
                "line_no": f.line,
                "message": f.message,
                "figures": f.figures,
                "payload": payload,
                "created_at": self.now,
            }
        )
        self._deliver(country, "alert", alert_id=alert_id)

    def _deliver(
        self,
        country: str,
        kind: str,
        doc_id: str | None = None,
        version: int | None = None,
        alert_id: str | None = None,
    ) -> None:
        now = self.now
        self.deliveries.append(
            (
                store.new_id(),
                country,
                kind,
                doc_id,
                version,
                alert_id,
                "pending",
                0,
                now,
                None,
                now,
                now,
                None,
                None,
            )
        )

    def transition(self, row: DocRow, state: str, actor: str, reason: str) -> None:
        """Move a document to ``state``, with its audit record."""
        self._audit(row.id, row.version, row.state, state, actor, reason)
        row.state = state
        self._change(row, {"state": state, "updated_at": self.now})

    def _change(self, row: DocRow, values: dict[str, Any]) -> None:
        if row.new:
            pending = self.documents[row.id]
            for name, value in values.items():
                pending[_DOCUMENT_INDEX[name]] = value
        else:
            self.dirty.setdefault(row.id, {}).update(values)

    def _audit(
        self,
        doc_id: str | None,
        version: int | None,
        from_state: str | None,
        to_state: str,
        actor: str,
        reason: str,
    ) -> None:
        self.audits.append(
            (self.now, doc_id, version, from_state, to_state, actor[:128], reason[:512])
        )

    def flush(self) -> None:
        """Write everything the batch decided, in a few multi-row statements."""
        conn, tables = self.conn, store.metadata.tables
        store.insert_tuples(
            conn, tables["documents"], DOCUMENT_COLUMNS, list(self.documents.values())
        )
        store.insert_tuples(
            conn, tables["document_versions"], VERSION_COLUMNS, self.versions
        )
        store.insert_tuples(conn, tables["document_lines"], LINE_COLUMNS, self.lines)
        store.insert_tuples(conn, tables["audit"], AUDIT_COLUMNS, self.audits)
        store.insert_many(conn, tables["alerts"], self.rows["alerts"])
        store.insert_tuples(
            conn, tables["deliveries"], DELIVERY_COLUMNS, self.deliveries
        )
        store.insert_many(conn, tables["quarantine"], self.rows["quarantine"])
        d = store.documents
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for doc_id, values in self.dirty.items():
            by_columns[tuple(sorted(values))].append(
                {"b_id": doc_id, **{f"b_{k}": v for k, v in values.items()}}
            )
        for columns, rows in by_columns.items():
            self.conn.execute(
                d.update()
                .where(d.c.id == bindparam("b_id"))
                .values({c: bindparam(f"b_{c}") for c in columns}),
                rows,
            )
        if self.links:
            # Export authorizations that arrived before the import authorization
            # they quote are linked now.
            self.conn.execute(
                d.update()
                .where(
                    d.c.ref_type == DocType.IMPORT_AUTHORIZATION.value,
                    d.c.ref_country == bindparam("b_country"),
                    d.c.ref_number == bindparam("b_number"),
                    d.c.linked_id.is_(None),
                )
                .values(linked_id=bindparam("b_ia")),
                self.links,
            )
        self.ledger.flush()


def _codes(findings: Sequence[Finding], extra: str = "") -> str:
    codes = ",".join(sorted({f.code for f in findings}))
    return f"{codes}; {extra}" if extra and codes else (codes or extra)


def render_alert(
    alert_id: str, f: Finding, country: str, doc: Document, at: Any
) -> bytes:
    """The canonical Alert message for a finding, addressed to ``country``."""
    root = etree.Element(canonical.q("Alert"), nsmap={None: canonical.NS})
    root.set("schemaVersion", canonical.SCHEMA_VERSION)

    def add(parent: etree._Element, name: str, text: str) -> etree._Element:
        el = etree.SubElement(parent, canonical.q(name))
        el.text = text
        return el

    add(root, "AlertId", alert_id)
    add(root, "Code", f.code)
    add(root, "Severity", f.severity)
    add(root, "Issued", at.isoformat(timespec="seconds"))
    add(root, "Country", country)
    ref = etree.SubElement(root, canonical.q("Document"))
    add(ref, "Type", doc.doc_type.value)
    add(ref, "Number", doc.number)
    add(ref, "IssuingCountry", doc.issuer)
    if f.line:
        add(root, "Line", str(f.line))
    add(root, "Message", f.message)
    for name, value in (f.figures or {}).items():
        try:
            Decimal(str(value))
        except ArithmeticError:
            continue
        fig = add(root, "Figure", str(value))
        fig.set("name", name)
        fig.set("unit", "g")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
