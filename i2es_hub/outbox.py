"""The outbox: one delivery per recipient, and its state machine.

``pending`` → ``delivered`` (the recipient's transport took it) → ``acknowledged``
(the recipient confirmed it). A transient failure moves a delivery to ``retrying``
with the next attempt time (exponential backoff with jitter); after the retry budget
it is ``failed``, parked for an operator, and ``replay`` makes it ``pending`` again.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from dataclasses import dataclass
from typing import Any

from lxml import etree
from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Connection

from i2es_hub import canonical, store
from i2es_hub.errors import ConflictError

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BASE_DELAY = dt.timedelta(seconds=30)
MAX_DELAY = dt.timedelta(hours=6)
DUE_STATES = ("pending", "retrying")


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """A rendered delivery, ready for a transport.

    Attributes:
        message_id: The delivery id: stable across retries, so repeats are harmless.
        recipient: The country it is addressed to.
        filename: A receiver-facing name that carries the message id.
        data: The canonical Message envelope (UTF-8 XML).
        content_type: MIME type of ``data``.
    """

    message_id: str
    recipient: str
    kind: str
    filename: str
    data: bytes
    content_type: str = "application/xml"


def _parse_ref(ref: str) -> tuple[str, str, str] | None:
    parts = ref.split("/", 2)
    if len(parts) == 3:
        return parts[0].upper(), parts[1], parts[2]
    return None


def find_document(conn: Connection, ref: str) -> dict[str, Any] | None:
    """A document row by id or ISSUER/TYPE/NUMBER."""
    d = store.documents
    ident = _parse_ref(ref)
    query = select(d).where(
        and_(d.c.issuer == ident[0], d.c.doc_type == ident[1], d.c.number == ident[2])
        if ident
        else d.c.id == ref
    )
    row = conn.execute(query).mappings().first()
    return dict(row) if row else None


def document_status(conn: Connection, ref: str) -> dict[str, Any] | None:
    """A document with its versions, audit trail and per-recipient deliveries."""
    doc = find_document(conn, ref)
    if doc is None:
        return None
    v, a, dl = store.document_versions, store.audit, store.deliveries
    versions = [
        dict(r)
        for r in conn.execute(
            select(
                v.c.version,
                v.c.message_id,
                v.c.outcome,
                v.c.findings,
                v.c.sender,
                v.c.channel,
                v.c.source,
                v.c.received_at,
            )
            .where(v.c.document_id == doc["id"])
            .order_by(v.c.version)
        ).mappings()
    ]
    trail = [
        dict(r)
        for r in conn.execute(
            select(
                a.c.at, a.c.version, a.c.from_state, a.c.to_state, a.c.actor, a.c.reason
            )
            .where(a.c.document_id == doc["id"])
            .order_by(a.c.id)
        ).mappings()
    ]
    # the document's own deliveries, then those of the alerts it raised
    al = store.alerts
    alert_ids = select(al.c.id).where(al.c.document_id == doc["id"])
    status_columns = (
        dl.c.id,
        dl.c.recipient,
        dl.c.kind,
        dl.c.version,
        dl.c.alert_id,
        dl.c.state,
        dl.c.attempts,
        dl.c.next_attempt_at,
        dl.c.last_error,
        dl.c.delivered_at,
        dl.c.acknowledged_at,
    )
    deliveries = [
        dict(r)
        for r in conn.execute(
            select(*status_columns)
            .where(or_(dl.c.document_id == doc["id"], dl.c.alert_id.in_(alert_ids)))
            .order_by(dl.c.alert_id.is_not(None), dl.c.seq)
        ).mappings()
    ]
    return {
        "document": doc,
        "versions": versions,
        "audit": trail,
        "deliveries": deliveries,
    }


def list_deliveries(
    conn: Connection,
    recipient: str,
    *,
    state: str | None = None,
    after: int = 0,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Deliveries to ``recipient`` with ``seq`` above ``after``, oldest first."""
    dl, d, al = store.deliveries, store.documents, store.alerts
    query = (
        select(dl, d.c.doc_type, d.c.issuer, d.c.number, al.c.code)
        .outerjoin(d, d.c.id == dl.c.document_id)
        .outerjoin(al, al.c.id == dl.c.alert_id)
        .where(dl.c.recipient == recipient, dl.c.seq > after)
        .order_by(dl.c.seq)
        .limit(limit)
    )
    if state:
        query = query.where(dl.c.state == state)
    rows = []
    for r in conn.execute(query).mappings():
        row = dict(r)
        row["title"] = (
            f"{r['code']} alert"
            if r["code"]
            else f"{r['doc_type']} {r['issuer']}/{r['number']}"
        )
        rows.append(row)
    return rows


def due(
    conn: Connection, recipient: str, now: dt.datetime, limit: int = 500
) -> list[dict[str, Any]]:
    """Deliveries to ``recipient`` that should be attempted now."""
    dl = store.deliveries
    query = (
        select(dl)
        .where(
            dl.c.recipient == recipient,
            dl.c.state.in_(DUE_STATES),
            or_(dl.c.next_attempt_at.is_(None), dl.c.next_attempt_at <= now),
        )
        .order_by(dl.c.seq)
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def render(conn: Connection, delivery: dict[str, Any]) -> OutboundMessage:
    """The Message envelope for a delivery: payload plus the findings it carries."""
    ns = canonical.NS
    root = etree.Element(canonical.q("Message"), nsmap={None: ns})

    def add(parent: etree._Element, name: str, text: str) -> etree._Element:
        el = etree.SubElement(parent, canonical.q(name))
        el.text = text
        return el

    add(root, "MessageId", delivery["id"])
    add(root, "Recipient", delivery["recipient"])
    add(root, "Kind", delivery["kind"])
    created = delivery["created_at"]
    if created.tzinfo is None:
        created = created.replace(tzinfo=dt.UTC)
    add(root, "Created", created.isoformat(timespec="seconds"))
    findings: list[dict[str, Any]] = []
    if delivery["kind"] == "alert":
        al = store.alerts
        payload = conn.execute(
            select(al.c.payload).where(al.c.id == delivery["alert_id"])
        ).scalar_one()
        name = f"alert-{delivery['id']}.xml"
    else:
        v = store.document_versions
        row = conn.execute(
            select(v.c.canonical, v.c.original, v.c.findings).where(
                v.c.document_id == delivery["document_id"],
                v.c.version == delivery["version"],
            )
        ).one()
        payload, findings = row.canonical or row.original, row.findings
        name = f"doc-{delivery['id']}.xml"
    shown = [f for f in findings if f["severity"] in ("warning", "alert", "hold")]
    if shown:
        box = etree.SubElement(root, canonical.q("Findings"))
        for f in shown:
            el = add(box, "Finding", f["message"])
            el.set("code", f["code"])
            el.set("severity", f["severity"])
            if f.get("line"):
                el.set("line", str(f["line"]))
    holder = etree.SubElement(root, canonical.q("Payload"))
    holder.append(
        etree.fromstring(
            payload, etree.XMLParser(resolve_entities=False, no_network=True)
        )
    )
    data = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return OutboundMessage(
        delivery["id"], delivery["recipient"], delivery["kind"], name, data
    )


def mark_delivered(conn: Connection, delivery_id: str, now: dt.datetime) -> None:
    """Record that the recipient's transport took the message."""
    dl = store.deliveries
    conn.execute(
        dl.update()
        .where(dl.c.id == delivery_id, dl.c.state.in_(DUE_STATES + ("failed",)))
        .values(
            state="delivered",
            delivered_at=now,
            updated_at=now,
            attempts=dl.c.attempts + 1,
            last_error=None,
        )
    )


def acknowledge(
    conn: Connection, delivery_id: str, recipient: str, now: dt.datetime
) -> bool:
    """The recipient confirmed a message; False when it is not theirs or unknown."""
    dl = store.deliveries
    result = conn.execute(
        dl.update()
        .where(dl.c.id == delivery_id, dl.c.recipient == recipient)
        .values(
            state="acknowledged",
            acknowledged_at=now,
            updated_at=now,
            delivered_at=func.coalesce(dl.c.delivered_at, now),
        )
    )
    return bool(result.rowcount)


def backoff(attempts: int, rng: random.Random | None = None) -> dt.timedelta:
    """Delay before the next attempt: exponential with full jitter, capped."""
    ceiling = min(MAX_DELAY, BASE_DELAY * (2 ** max(attempts - 1, 0)))
    return ceiling * (rng or random).uniform(0.5, 1.0)


def mark_failed_attempt(
    conn: Connection,
    delivery: dict[str, Any],
    error: str,
    now: dt.datetime,
    *,
    retriable: bool,
) -> str:
    """Record a failed attempt; returns the new state (retrying or failed)."""
    dl = store.deliveries
    attempts = delivery["attempts"] + 1
    if retriable and attempts < MAX_ATTEMPTS:
        state, next_at = "retrying", now + backoff(attempts)
    else:
        state, next_at = "failed", None
    conn.execute(
        dl.update()
        .where(dl.c.id == delivery["id"])
        .values(
            state=state,
            attempts=attempts,
            next_attempt_at=next_at,
            last_error=error[:2000],
            updated_at=now,
        )
    )
    if state == "failed":
        log.warning(
            "delivery %s to %s parked after %d attempts: %s",
            delivery["id"],
            delivery["recipient"],
            attempts,
            error,
        )
    return state


def replay_failed(
    conn: Connection,
    now: dt.datetime,
    *,
    recipient: str | None = None,
    ids: list[str] | None = None,
) -> int:
    """Make parked deliveries pending again; returns how many."""
    dl = store.deliveries
    query = dl.update().where(dl.c.state == "failed")
    if recipient:
        query = query.where(dl.c.recipient == recipient)
    if ids:
        query = query.where(dl.c.id.in_(ids))
    result = conn.execute(
        query.values(state="pending", attempts=0, next_attempt_at=now, updated_at=now)
    )
    return int(result.rowcount)


def require_state(conn: Connection, delivery_id: str, allowed: tuple[str, ...]) -> None:
    """Raise ConflictError unless the delivery is in one of ``allowed``."""
    dl = store.deliveries
    state = conn.execute(select(dl.c.state).where(dl.c.id == delivery_id)).scalar()
    if state not in allowed:
        raise ConflictError(
            f"delivery {delivery_id} is {state or 'unknown'}, expected one of "
            f"{', '.join(allowed)}"
        )
