"""``Idempotency-Key`` for uploads: a retried request gets the first answer.

The key and the SHA-256 of the request body are recorded as the submission's
*source* (``api idempotency-key=KEY sha256=HEX``), which the pipeline stores with
the document version or the quarantine entry it writes, in the same transaction.
A later request from the same country with the same key is answered from that
record: same body, the first answer again and no second effect; different body,
409. A first upload that changed nothing (a duplicate of a document received
through another channel) leaves no record, and its retry is again a duplicate
with no effect, which is the same answer.

Limitations: the lookup filters on the ``source`` column, which has no index of
its own, so its cost grows with the sender's history; two requests racing with the
same key may both reach the pipeline, whose content check then answers the second
one ``duplicate`` instead of repeating the first answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.engine import Connection

from i2es_hub import store

KEY = re.compile(r"^[!-~]{1,128}$")
_PREFIX = "api idempotency-key="


def valid_key(key: str) -> bool:
    """True for 1 to 128 printable ASCII characters without spaces."""
    return bool(KEY.match(key))


def source_for(key: str, digest: str) -> str:
    """The submission source that records the key and the body's digest."""
    return f"{_PREFIX}{key} sha256={digest}"


def _digest_of(source: str) -> str:
    return source.rsplit(" sha256=", 1)[-1]


@dataclass(frozen=True, slots=True)
class Previous:
    """What an earlier request with the same key left behind.

    Attributes:
        digest: SHA-256 of that request's body.
        result: The answer it got, in ``Result.to_json`` form.
    """

    digest: str
    result: dict[str, Any]


def _findings(stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "code": f["code"],
            "severity": f["severity"],
            "line": f.get("line"),
            "message": f["message"],
        }
        for f in stored
    ]


def find(conn: Connection, country: str, key: str) -> Previous | None:
    """The earlier request from ``country`` with ``key``, or None."""
    prefix = f"{_PREFIX}{key} sha256="
    v, d = store.document_versions, store.documents
    row = conn.execute(
        select(
            v.c.source,
            v.c.version,
            v.c.message_id,
            v.c.outcome,
            v.c.findings,
            v.c.received_at,
            d.c.id,
            d.c.doc_type,
            d.c.issuer,
            d.c.number,
        )
        .join(d, d.c.id == v.c.document_id)
        .where(v.c.sender == country, v.c.source.startswith(prefix, autoescape=True))
        .order_by(v.c.id)
        .limit(1)
    ).first()
    if row is not None:
        return Previous(_digest_of(row.source), _stored_result(conn, row))
    q = store.quarantine
    qrow = conn.execute(
        select(q)
        .where(q.c.sender == country, q.c.source.startswith(prefix, autoescape=True))
        .order_by(q.c.received_at)
        .limit(1)
    ).first()
    if qrow is None:
        return None
    return Previous(
        _digest_of(qrow.source),
        {
            "document": {
                "type": qrow.doc_type,
                "number": qrow.number,
                "issuer": qrow.issuer,
            },
            "outcome": "rejected",
            "findings": _findings(qrow.findings),
            "deliveries": [],
            "source": qrow.source,
            "quarantine_id": qrow.id,
        },
    )


def _stored_result(conn: Connection, row: Any) -> dict[str, Any]:
    """Rebuild the first answer from the version it stored and its deliveries."""
    dl, al = store.deliveries, store.alerts
    documents = conn.execute(
        select(dl.c.recipient).where(
            dl.c.document_id == row.id, dl.c.version == row.version
        )
    ).scalars()
    alerted = conn.execute(
        select(dl.c.recipient)
        .join(al, al.c.id == dl.c.alert_id)
        .where(and_(al.c.document_id == row.id, al.c.created_at == row.received_at))
    ).scalars()
    return {
        "document": {"type": row.doc_type, "number": row.number, "issuer": row.issuer},
        "outcome": row.outcome,
        "findings": _findings(row.findings),
        "deliveries": sorted(set(documents) | set(alerted)),
        "source": row.source,
        "message_id": row.message_id,
        "document_id": row.id,
    }
