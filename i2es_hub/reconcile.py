"""Reconciliation: authorized, exported, received and remaining, per substance.

What an authority needs before its quarterly Form A return: for one importing
country and year, how much it authorized, how much was authorized for export to it,
how much arrived, what is still reserved and available, and which export
authorizations are still open.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from i2es_hub import store
from i2es_hub.canonical import DocType
from i2es_hub.ledger import balances

ZERO = Decimal(0)
COUNTED = ("accepted", "endorsed", "expired", "cancelled")


def reconcile(conn: Connection, country: str, year: int) -> dict[str, Any]:
    """The reconciliation of ``country`` for ``year`` (grams of anhydrous base).

    Per substance: ``authorized`` by the country's import authorizations issued in
    the year (cancelled ones excluded), ``exported`` under export authorizations to
    it, ``received`` as endorsed in the year, ``reserved`` and ``available`` on the
    balance, and ``remaining`` = authorized - received.
    """
    h, d = store.holdings, store.documents
    sums: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    query = (
        select(
            h.c.substance,
            h.c.kind,
            h.c.quantity,
            h.c.consumed,
            h.c.year,
            h.c.consumed_year,
            d.c.state,
        )
        .join(d, d.c.id == h.c.document_id)
        .where(h.c.country == country)
    )
    for r in conn.execute(query):
        if (
            r.kind == DocType.IMPORT_AUTHORIZATION
            and r.year == year
            and r.state != "cancelled"
        ):
            sums[r.substance]["authorized"] += Decimal(r.quantity)
        elif (
            r.kind == DocType.EXPORT_AUTHORIZATION
            and r.year == year
            and r.state != "cancelled"
        ):
            sums[r.substance]["exported"] += Decimal(r.quantity)
        elif r.kind == DocType.ENDORSEMENT and r.consumed_year == year:
            sums[r.substance]["received"] += Decimal(r.consumed)
    ledger_rows = {b["substance"]: b for b in balances(conn, country, year=year)}
    substances = []
    for name in sorted(set(sums) | set(ledger_rows)):
        s, b = sums[name], ledger_rows.get(name, {})
        substances.append(
            {
                "substance": name,
                "figure": b.get("figure"),
                "authorized": float(s["authorized"]),
                "exported": float(s["exported"]),
                "received": float(s["received"]),
                "remaining": float(s["authorized"] - s["received"]),
                "reserved": b.get("reserved", 0.0),
                "available": b.get("available"),
            }
        )
    open_query = (
        select(
            d.c.id,
            d.c.issuer,
            d.c.number,
            d.c.exporter_country,
            d.c.validity_until,
            d.c.issue_date,
        )
        .where(
            d.c.doc_type == DocType.EXPORT_AUTHORIZATION.value,
            d.c.importer_country == country,
            d.c.state.in_(("accepted",)),
        )
        .order_by(d.c.validity_until, d.c.number)
    )
    open_exports = [
        {
            "id": r.id,
            "issuer": r.issuer,
            "number": r.number,
            "exporter_country": r.exporter_country,
            "validity_until": r.validity_until.isoformat()
            if r.validity_until
            else None,
        }
        for r in conn.execute(open_query)
        if r.issue_date.year <= year
    ]
    return {
        "country": country,
        "year": year,
        "substances": substances,
        "open_export_authorizations": open_exports,
    }
