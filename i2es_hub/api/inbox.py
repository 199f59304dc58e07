"""Routes for what is addressed to the caller: inbox, acknowledgement, balances.

The inbox is the outbox seen from the recipient's side: one message per delivery
addressed to the caller's country, in the order the hub wrote them. The cursor
is the delivery's sequence number, so ``after`` never skips or repeats a message
whatever arrives in between. Fetching a message marks its delivery ``delivered``;
``POST /v1/inbox/{id}/ack`` marks it ``acknowledged``.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from sqlalchemy import select

from i2es_hub import ledger, outbox, store
from i2es_hub.api.auth import CallerDep
from i2es_hub.api.documents import ID_PATTERN, utc
from i2es_hub.api.errors import ApiError

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1")

MAX_PAGE = 500
_MARKABLE = ("pending", "retrying", "failed")


def _message(row: dict[str, Any], xml: bytes) -> dict[str, Any]:
    document = (
        {
            "id": row["document_id"],
            "type": row["doc_type"],
            "issuer": row["issuer"],
            "number": row["number"],
            "version": row["version"],
        }
        if row["document_id"]
        else None
    )
    alert = {"id": row["alert_id"], "code": row["code"]} if row["alert_id"] else None
    return {
        "id": row["id"],
        "seq": row["seq"],
        "kind": row["kind"],
        "title": row["title"],
        "state": row["state"],
        "created_at": utc(row["created_at"]),
        "document": document,
        "alert": alert,
        "xml": xml.decode("utf-8"),
    }


@router.get("/inbox", tags=["inbox"], summary="Messages addressed to your country")
def get_inbox(
    request: Request,
    caller: CallerDep,
    after: Annotated[
        int,
        Query(ge=0, le=2**62, description="Return messages after this cursor."),
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> dict[str, Any]:
    """Documents and alerts addressed to the caller, oldest first.

    Each message carries its id, kind, title and the canonical Message envelope
    XML. Pass ``next_after`` from one page as ``after`` for the next; ``more``
    says whether another page is waiting. Fetching marks the messages delivered.
    """
    hub = request.app.state.hub
    with hub.write_lock, store.write_transaction(hub.engine) as conn:
        now = store.utcnow()
        rows = outbox.list_deliveries(
            conn, caller.country, after=after, limit=limit + 1
        )
        more = len(rows) > limit
        rows = rows[:limit]
        messages = []
        for row in rows:
            rendered = outbox.render(conn, row)
            if row["state"] in _MARKABLE:
                outbox.mark_delivered(conn, row["id"], now)
                row["state"] = "delivered"
            messages.append(_message(row, rendered.data))
    log.info(
        "api inbox of %s: %d messages after %d", caller.country, len(messages), after
    )
    return {
        "country": caller.country,
        "messages": messages,
        "next_after": messages[-1]["seq"] if messages else after,
        "more": more,
    }


@router.post(
    "/inbox/{id}/ack", tags=["inbox"], summary="Confirm a message was processed"
)
def post_ack(
    request: Request,
    caller: CallerDep,
    id: Annotated[str, PathParam(min_length=1, max_length=64, pattern=ID_PATTERN)],
) -> dict[str, Any]:
    """Mark a message addressed to the caller ``acknowledged``; repeating is harmless.

    Raises:
        ApiError: 404 for an unknown message, 403 for one addressed to another
            country.
    """
    dl = store.deliveries
    hub = request.app.state.hub
    with hub.write_lock, store.write_transaction(hub.engine) as conn:
        row = conn.execute(
            select(dl.c.recipient, dl.c.state, dl.c.acknowledged_at).where(
                dl.c.id == id
            )
        ).first()
        if row is None:
            raise ApiError(
                404,
                "NOT_FOUND",
                f"no message with id {id!r}",
                "acknowledge a message id from GET /v1/inbox",
            )
        if row.recipient != caller.country:
            raise ApiError(
                403,
                "FORBIDDEN",
                f"message {id} is addressed to another country, not {caller.country}",
                "acknowledge only messages from your own inbox (GET /v1/inbox)",
            )
        acknowledged_at = row.acknowledged_at
        if row.state != "acknowledged":
            acknowledged_at = store.utcnow()
            outbox.acknowledge(conn, id, caller.country, acknowledged_at)
    log.info("api ack from %s: message %s", caller.country, id)
    return {"id": id, "state": "acknowledged", "acknowledged_at": utc(acknowledged_at)}


def _plain(value: Any) -> Any:
    # Decimal figures travel as strings so no digit is lost to a float.
    return str(value) if isinstance(value, Decimal) else value


@router.get("/balances", tags=["balances"], summary="Your estimate balances")
def get_balances(
    request: Request,
    caller: CallerDep,
    substance: Annotated[
        str | None,
        Query(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]+$"),
    ] = None,
    year: Annotated[int | None, Query(ge=1961, le=9999)] = None,
) -> dict[str, Any]:
    """The caller's estimate and assessment balances, in grams of anhydrous base.

    One entry per substance and year: the figure in force, what is reserved by
    authorizations, what endorsements consumed, and what is available.
    """
    with store.read_transaction(request.app.state.engine) as conn:
        rows = ledger.balances(conn, caller.country, substance, year)
    return {
        "country": caller.country,
        "balances": [{k: _plain(v) for k, v in row.items()} for row in rows],
    }
