"""The estimate and assessment balance ledger (see docs/estimates.md)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Connection

from i2es_hub.canonical import Document
from i2es_hub.findings import Finding


class Ledger:
    """Per-batch view of the balances; the ingest batch calls it in order."""

    def __init__(self, conn: Connection, now: dt.datetime) -> None:
        self.conn = conn
        self.now = now

    def prepare(self, docs: Iterable[Document]) -> None:
        """Lock and load the balance rows the batch's documents touch."""

    def apply(
        self,
        doc: Document,
        bases: dict[int, Decimal],
        previous_id: str | None,
        known: Mapping[Any, Any],
        drawn_on: Callable[[str], dict[str, Decimal]],
    ) -> list[Finding]:
        """Check the document against the balance, then record its effect."""
        return []

    def cancel(self, row: Any) -> None:
        """Give back what a cancelled document holds."""

    def flush(self) -> None:
        """Write the batch's balance changes."""
