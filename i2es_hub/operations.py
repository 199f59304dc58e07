"""Operator and scheduled steps on stored documents: held decisions and expiry.

Each runs in one write transaction through the ingest batch writer, so the ledger,
the audit trail and the outbox change together.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.engine import Engine

from i2es_hub import store
from i2es_hub.canonical import DocType
from i2es_hub.errors import ConflictError
from i2es_hub.findings import Code, Finding
from i2es_hub.ingest import Pipeline
from i2es_hub.writer import ACTIVE_STATES, BatchWriter, DocRow

log = logging.getLogger(__name__)


def _held(writer: BatchWriter, doc_id: str, decision: str) -> DocRow:
    row = _row(writer, doc_id)
    if row.state != "held":
        raise ConflictError(
            f"document {doc_id} is {row.state}, not held; only held documents "
            f"can be {decision}"
        )
    return row


def _row(writer: BatchWriter, doc_id: str) -> DocRow:
    d = store.documents
    r = writer.conn.execute(select(d).where(d.c.id == doc_id)).mappings().first()
    if r is None:
        raise ConflictError(f"no document with id {doc_id}; see 'i2es-hub held list'")
    row = DocRow(
        id=r["id"],
        doc_type=r["doc_type"],
        issuer=r["issuer"],
        number=r["number"],
        state=r["state"],
        version=r["version"],
        content_hash=r["content_hash"],
        importer_country=r["importer_country"],
        exporter_country=r["exporter_country"],
        ref_number=r["ref_number"],
        ref_country=r["ref_country"],
        linked_id=r["linked_id"],
        emergency=r["emergency"],
    )
    writer.remember(row)
    return row


def release_held(engine: Engine, doc_id: str, operator: str) -> list[str]:
    """Accept a held document: apply its ledger effect and route it.

    Returns:
        The countries it was routed to.

    Raises:
        ConflictError: the document does not exist or is not held.
    """
    pipeline = Pipeline(engine)
    with store.write_transaction(engine) as conn:
        writer = BatchWriter(conn, pipeline, [])
        row = _held(writer, doc_id, "released")
        stored = writer.authorization(row)
        doc = stored.doc
        writer.load_identities([doc])
        ref = doc.ref
        target = (
            writer.known.get((ref.country, ref.doc_type.value, ref.number))
            if ref
            else None
        )
        writer.ledger.prepare([doc], writer.ledger_documents([doc]))
        plan = writer.ledger_plan(doc, row.id, stored.bases, None)
        writer.ledger.execute(plan)
        actor = f"operator:{operator}"
        writer.transition(row, "accepted", actor, "released from hold")
        findings = _stored_findings(writer, row)
        recipients = writer.route(doc, row.id, row.version, target, findings, actor)
        writer.flush()
    log.info("released held document %s; routed to %s", doc_id, recipients)
    return recipients


def reject_held(engine: Engine, doc_id: str, operator: str, reason: str) -> None:
    """Reject a held document; it leaves no effect on the ledger."""
    pipeline = Pipeline(engine)
    with store.write_transaction(engine) as conn:
        writer = BatchWriter(conn, pipeline, [])
        row = _held(writer, doc_id, "rejected by an operator")
        writer.transition(row, "rejected", f"operator:{operator}", reason or "rejected")
        writer.flush()


def _stored_findings(writer: BatchWriter, row: DocRow) -> list[Finding]:
    v = store.document_versions
    data = writer.conn.execute(
        select(v.c.findings).where(
            v.c.document_id == row.id, v.c.version == row.version
        )
    ).scalar_one()
    return [
        Finding(
            **{
                k: f.get(k)
                for k in (
                    "code",
                    "severity",
                    "message",
                    "line",
                    "path",
                    "source_line",
                    "figures",
                )
            }
        )
        for f in data
    ]


@dataclass(frozen=True, slots=True)
class ExpiryReport:
    """What one expiry sweep did."""

    import_authorizations: int
    export_authorizations: int
    alerts: int


def expire(engine: Engine, as_of: dt.date, actor: str = "hub:expiry") -> ExpiryReport:
    """Expire authorizations whose validity ended before ``as_of``.

    Releases what they still reserve; an export authorization that ends without an
    endorsement raises EXPIRED_UNENDORSED to both countries. Running it again for
    the same date does nothing more.
    """
    d = store.documents
    with store.read_transaction(engine) as conn:
        ids = (
            conn.execute(
                select(d.c.id)
                .where(
                    d.c.doc_type.in_(
                        [
                            DocType.IMPORT_AUTHORIZATION.value,
                            DocType.EXPORT_AUTHORIZATION.value,
                        ]
                    ),
                    d.c.state.in_(ACTIVE_STATES),
                    d.c.state != "endorsed",
                    d.c.validity_until < as_of,
                )
                .order_by(d.c.validity_until, d.c.id)
            )
            .scalars()
            .all()
        )
    pipeline = Pipeline(engine)
    counts = {"import": 0, "export": 0, "alerts": 0}
    for start in range(0, len(ids), 200):
        with store.write_transaction(engine) as conn:
            writer = BatchWriter(conn, pipeline, [])
            rows = [_row(writer, i) for i in ids[start : start + 200]]
            rows = [
                r for r in rows if r.state in ACTIVE_STATES and r.state != "endorsed"
            ]
            docs = [writer.authorization(r).doc for r in rows]
            writer.ledger.prepare(docs, {r.id for r in rows})
            for row, doc in zip(rows, docs, strict=True):
                writer.ledger.close(row.id, row.doc_type)
                writer.transition(
                    row, "expired", actor, f"validity ended {doc.validity_until}"
                )
                if row.doc_type == DocType.EXPORT_AUTHORIZATION.value:
                    counts["export"] += 1
                    finding = Finding.of(
                        Code.EXPIRED_UNENDORSED,
                        f"{doc.label}: validity ended {doc.validity_until} and no "
                        f"endorsement came from {doc.importing_country}; what it "
                        "reserved is released",
                        figures={
                            "authorized": str(
                                sum(
                                    writer.authorization(row).bases.values(), Decimal(0)
                                )
                            )
                        },
                    )
                    for country in sorted(
                        {c for c in (doc.exporting_country, doc.importing_country) if c}
                    ):
                        writer.alert(doc, row.id, finding, country)
                        counts["alerts"] += 1
                else:
                    counts["import"] += 1
            writer.flush()
    log.info(
        "expiry as of %s: %d import and %d export authorizations expired, %d alerts",
        as_of,
        counts["import"],
        counts["export"],
        counts["alerts"],
    )
    return ExpiryReport(counts["import"], counts["export"], counts["alerts"])
