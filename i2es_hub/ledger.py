"""The estimate and assessment balance ledger (DESIGN.md section 3, docs/estimates.md).

Balances are kept per (importing country, substance, calendar year) in grams of
anhydrous base: ``available = figure in force - reserved - consumed``. Each document's
effect is recorded as *holdings* (one per document and substance), so that an
endorsement, a cancellation, an amendment or the end of validity can undo exactly
what the document did.

- An import authorization reserves its quantity on its own key.
- An export authorization draws on its import authorization (the drawn grams stay
  reserved on the import authorization's key, now held by the export) and reserves
  the rest anew on its own key.
- An endorsement releases what its export authorization holds and consumes what was
  received, in the year of receipt.

The check runs before a document's effect: its *new demand* (the net increase it
reserves) is compared with what is available. The batch locks the balance rows it
touches (``SELECT ... FOR UPDATE`` on PostgreSQL, the write lock on SQLite), so two
workers can never both pass documents that together exceed a balance. Each check
reads and writes a constant number of rows, whatever the history.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.engine import Connection

from i2es_hub import store
from i2es_hub.canonical import DocType, Document
from i2es_hub.findings import Code, Finding
from i2es_hub.reference import Substance

log = logging.getLogger(__name__)

ZERO = Decimal(0)
Key = tuple[str, str, int]  # (country, substance, year)
SubstanceLookup = Callable[[str, dt.date], Substance | None]
LEDGER_TYPES = (DocType.IMPORT_AUTHORIZATION, DocType.EXPORT_AUTHORIZATION)


@dataclass(slots=True)
class Balance:
    """One balance row, locked for the batch."""

    key: Key
    id: int | None
    reserved: Decimal
    consumed: Decimal
    dirty: bool = False


@dataclass(slots=True)
class Holding:
    """What one document holds of one substance on the ledger."""

    id: str
    document_id: str
    substance: str
    kind: str  # import-authorization | export-authorization | endorsement
    country: str
    year: int
    quantity: Decimal = ZERO
    reserved: Decimal = ZERO
    drawn: Decimal = ZERO
    ia_holding_id: str | None = None
    consumed: Decimal = ZERO
    consumed_year: int | None = None
    open: bool = True
    new: bool = False
    dirty: bool = False

    @property
    def key(self) -> Key:
        """The balance this holding reserves on."""
        return (self.country, self.substance, self.year)


@dataclass(slots=True)
class Plan:
    """A document's checked effect, applied only if the document is accepted."""

    findings: list[Finding] = field(default_factory=list)
    steps: list[Callable[[], None]] = field(default_factory=list)


def _totals(
    doc: Document, bases: Mapping[int, Decimal]
) -> dict[str, tuple[Decimal, int]]:
    """Base grams per substance, with the first line number that carries it."""
    out: dict[str, tuple[Decimal, int]] = {}
    for line in doc.lines:
        name = line.substance.strip().lower()
        grams = bases.get(line.number, ZERO)
        if name in out:
            out[name] = (out[name][0] + grams, out[name][1])
        else:
            out[name] = (grams, line.number)
    return out


def _year(day: dt.date | None) -> int:
    assert day is not None
    return day.year


class Ledger:
    """The ledger as one ingest batch sees it: locked rows, changes in memory.

    Args:
        conn: The batch's write transaction.
        now: The batch's timestamp.
        substance_of: Reference lookup (name, date) -> Substance.
    """

    def __init__(
        self,
        conn: Connection,
        now: dt.datetime,
        substance_of: SubstanceLookup | None = None,
    ) -> None:
        self.conn = conn
        self.now = now
        self.substance_of = substance_of
        self.balances: dict[Key, Balance] = {}
        self.by_doc: dict[str, dict[str, Holding]] = {}
        self.by_id: dict[str, Holding] = {}
        self._figures: dict[tuple[str, str, int, bool], Decimal | None] = {}
        self._prohibited: dict[tuple[str, str], dt.date | None] = {}
        self._substances: dict[tuple[str, dt.date], Substance | None] = {}
        self.postgres = conn.dialect.name == "postgresql"

    # ----- loading and locking -------------------------------------------------

    def prepare(self, docs: Iterable[Document], doc_ids: Iterable[str]) -> None:
        """Lock the balance rows a batch touches and load the holdings it changes.

        Args:
            docs: The batch's documents.
            doc_ids: Ids of stored documents the batch may change (amended ones,
                quoted ones, waiting export authorizations).
        """
        keys: set[Key] = set()
        for doc in docs:
            keys |= self._doc_keys(doc)
        self._load_holdings(set(doc_ids))
        keys |= {h.key for h in self.by_id.values()}
        self._lock(keys)
        # Read the holdings again under the lock: another worker may have changed
        # them between the first read and the lock.
        self._load_holdings(set(self.by_doc), refresh=True)

    def _doc_keys(self, doc: Document) -> set[Key]:
        if doc.doc_type in LEDGER_TYPES and not doc.emergency:
            country, year = doc.importing_country or "", doc.issue_date.year
        elif doc.doc_type is DocType.ENDORSEMENT:
            country = doc.issuer
            year = _year(doc.receipt_date or doc.expired_without_import)
        else:
            return set()
        return {(country, line.substance.strip().lower(), year) for line in doc.lines}

    def _load_holdings(self, doc_ids: set[str], refresh: bool = False) -> None:
        h = store.holdings
        ids = sorted(doc_ids)
        rows: list[Any] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows += self.conn.execute(select(h).where(h.c.document_id.in_(chunk))).all()
        ia_ids = {r.ia_holding_id for r in rows if r.ia_holding_id} - {
            r.id for r in rows
        }
        if ia_ids:
            rows += self.conn.execute(select(h).where(h.c.id.in_(sorted(ia_ids)))).all()
        for r in rows:
            known = self.by_id.get(r.id)
            if known is not None and (known.new or known.dirty):
                continue
            holding = Holding(
                id=r.id,
                document_id=r.document_id,
                substance=r.substance,
                kind=r.kind,
                country=r.country,
                year=r.year,
                quantity=Decimal(r.quantity),
                reserved=Decimal(r.reserved),
                drawn=Decimal(r.drawn),
                ia_holding_id=r.ia_holding_id,
                consumed=Decimal(r.consumed),
                consumed_year=r.consumed_year,
                open=r.open,
            )
            self.by_id[r.id] = holding
            self.by_doc.setdefault(r.document_id, {})[r.substance] = holding

    def _lock(self, keys: set[Key]) -> None:
        missing = sorted(k for k in keys if k not in self.balances)
        if not missing:
            return
        b = store.balances
        rows = [
            {
                "country": c,
                "substance": s,
                "year": y,
                "reserved": ZERO,
                "consumed": ZERO,
                "updated_at": self.now,
            }
            for c, s, y in missing
        ]
        # The dialect modules are imported here: the PostgreSQL one brings every
        # driver's module with it, a twentieth of a second at each CLI start.
        if self.postgres:
            from sqlalchemy.dialects import postgresql as dialect
        else:
            from sqlalchemy.dialects import sqlite as dialect  # type: ignore[no-redef]
        insert = dialect.insert(b).on_conflict_do_nothing()
        self.conn.execute(insert, rows)
        for start in range(0, len(missing), 400):
            chunk = missing[start : start + 400]
            query = (
                select(
                    b.c.id,
                    b.c.country,
                    b.c.substance,
                    b.c.year,
                    b.c.reserved,
                    b.c.consumed,
                )
                .where(tuple_(b.c.country, b.c.substance, b.c.year).in_(chunk))
                .order_by(b.c.country, b.c.substance, b.c.year)
            )
            if self.postgres:
                query = query.with_for_update()
            for r in self.conn.execute(query):
                key = (r.country, r.substance, r.year)
                self.balances[key] = Balance(
                    key, r.id, Decimal(r.reserved), Decimal(r.consumed)
                )

    def balance(self, key: Key) -> Balance:
        """The locked balance row for ``key``, locking it now if the batch had not."""
        if key not in self.balances:
            self._lock({key})
        return self.balances[key]

    # ----- reference figures ----------------------------------------------------

    def _substance(self, name: str, day: dt.date) -> Substance | None:
        """The reference entry for ``name`` on ``day``, looked up once a batch."""
        if self.substance_of is None:
            return None
        key = (name, day)
        try:
            return self._substances[key]
        except KeyError:
            found = self._substances[key] = self.substance_of(name, day)
            return found

    def figure(
        self, country: str, substance: str, year: int, narcotic: bool
    ) -> Decimal | None:
        """The estimate (narcotic) or assessment (psychotropic) in force, in grams."""
        cache_key = (country, substance, year, narcotic)
        if cache_key not in self._figures:
            self._figures[cache_key] = figure_in_force(
                self.conn, country, substance, year, narcotic
            )
        return self._figures[cache_key]

    def prohibited_since(self, country: str, substance: str) -> dt.date | None:
        """The date from which ``country`` prohibits importing ``substance``."""
        key = (country, substance)
        if key not in self._prohibited:
            p = store.prohibitions
            self._prohibited[key] = self.conn.execute(
                select(p.c.since)
                .where(p.c.country == country, p.c.substance == substance)
                .order_by(p.c.since)
                .limit(1)
            ).scalar()
        return self._prohibited[key]

    # ----- planning a document's effect ------------------------------------------

    def plan(
        self,
        doc: Document,
        doc_id: str,
        bases: Mapping[int, Decimal],
        previous_id: str | None,
        target_id: str | None,
    ) -> Plan:
        """Check a document against the balances and plan its effect.

        Args:
            doc: The document.
            doc_id: Its id (the stored document's id for an amendment).
            bases: Base grams per line number.
            previous_id: The stored document when this is an amendment.
            target_id: The stored document it quotes (import authorization for an
                export authorization, export authorization for an endorsement).
        """
        plan = Plan()
        if doc.doc_type in (
            DocType.IMPORT_AUTHORIZATION,
            DocType.EXPORT_AUTHORIZATION,
            DocType.EXPORT_DECLARATION,
        ):
            plan.findings += self._prohibitions(doc)
        if doc.emergency:
            return plan
        if doc.doc_type is DocType.IMPORT_AUTHORIZATION:
            self._plan_import(plan, doc, doc_id, bases, previous_id)
        elif doc.doc_type is DocType.EXPORT_AUTHORIZATION:
            self._plan_export(plan, doc, doc_id, bases, previous_id, target_id)
        elif doc.doc_type is DocType.ENDORSEMENT:
            self._plan_endorsement(plan, doc, doc_id, bases, target_id)
        return plan

    def execute(self, plan: Plan) -> None:
        """Apply a planned effect (the document was accepted)."""
        for step in plan.steps:
            step()

    def _prohibitions(self, doc: Document) -> list[Finding]:
        country = doc.importing_country
        if not country or doc.special_import_licence.strip():
            return []
        findings = []
        for line in doc.lines:
            since = self.prohibited_since(country, line.substance.strip().lower())
            if since is not None and since <= doc.issue_date:
                findings.append(
                    Finding.of(
                        Code.IMPORT_PROHIBITED,
                        f"{doc.label} line {line.number}: {country} has prohibited "
                        f"the import of {line.substance} since {since} (1971 art. 13);"
                        " quote the special import licence to proceed",
                        line=line.number,
                    )
                )
        return findings

    def _check(
        self, doc: Document, substance: str, line: int, year: int, demand: Decimal
    ) -> list[Finding]:
        """EXCESS_ESTIMATE / EXCESS_ASSESSMENT / NO_ESTIMATE for a new demand.

        The comparison is ``new demand > available`` even when the new demand is
        zero: a document that draws on a balance already exceeded is flagged too.
        """
        demand = max(demand, ZERO)
        country = doc.importing_country or ""
        info = self._substance(substance, doc.issue_date)
        if info is not None and info.convention == "1971" and info.schedule == "I":
            return []  # Schedule I psychotropics have no assessments
        narcotic = info is None or info.is_narcotic
        word = "estimate" if narcotic else "assessment"
        figure = self.figure(country, substance, year, narcotic)
        if figure is None:
            grams = str(demand)
            return [
                Finding.of(
                    Code.NO_ESTIMATE,
                    f"{doc.label} line {line}: {country} has no {word} on file for "
                    f"{substance} in {year}; {grams} g base could not be checked",
                    line=line,
                    figures={
                        "substance": substance,
                        "year": year,
                        "this_document": grams,
                    },
                )
            ]
        bal = self.balance((country, substance, year))
        available = figure - bal.reserved - bal.consumed
        if demand <= available:
            return []
        code = Code.EXCESS_ESTIMATE if narcotic else Code.EXCESS_ASSESSMENT
        return [
            Finding.of(
                code,
                f"{doc.label} line {line}: {substance} {demand} g base exceeds what is "
                f"left of {country}'s {year} {word}: {word} {figure} g, reserved "
                f"{bal.reserved} g, consumed {bal.consumed} g, available "
                f"{available} g; excess {demand - available} g",
                line=line,
                figures={
                    "substance": substance,
                    "year": year,
                    "figure": str(figure),
                    "reserved": str(bal.reserved),
                    "consumed": str(bal.consumed),
                    "this_document": str(demand),
                    "excess": str(demand - available),
                },
            )
        ]

    def _holding(self, doc_id: str, substance: str, kind: str, key: Key) -> Holding:
        held = self.by_doc.get(doc_id)
        existing = held.get(substance) if held else None
        if existing is not None:
            return existing
        holding = Holding(
            store.new_id(), doc_id, substance, kind, key[0], key[2], new=True
        )
        self.by_id[holding.id] = holding
        self.by_doc.setdefault(doc_id, {})[substance] = holding
        return holding

    def _reserve(self, key: Key, grams: Decimal) -> None:
        if grams:
            bal = self.balance(key)
            bal.reserved += grams
            bal.dirty = True

    def _consume(self, key: Key, grams: Decimal) -> None:
        if grams:
            bal = self.balance(key)
            bal.consumed += grams
            bal.dirty = True

    def _touch(self, holding: Holding) -> None:
        holding.dirty = True

    # import authorizations

    def _plan_import(
        self,
        plan: Plan,
        doc: Document,
        doc_id: str,
        bases: Mapping[int, Decimal],
        previous_id: str | None,
    ) -> None:
        country, year = doc.importing_country or "", doc.issue_date.year
        old = dict(self.by_doc.get(doc_id, {})) if previous_id else {}
        waiting = self._waiting_exports(doc_id) if self.waiting.get(doc_id) else {}
        for substance, (grams, line) in _totals(doc, bases).items():
            key = (country, substance, year)
            holding = old.get(substance)
            undrawn_before = holding.reserved if holding and holding.open else ZERO
            drawn = holding.drawn if holding else ZERO
            # exports that arrived first are linked now and draw on this one
            links = []
            linked = ZERO
            allowance = grams - drawn
            for ea in waiting.get(substance, ()):
                take = min(ea.reserved, max(allowance, ZERO))
                if take > ZERO:
                    links.append((ea, take))
                    allowance -= take
                    linked += take
            undrawn_after = max(grams - drawn - linked, ZERO)
            demand = undrawn_after - undrawn_before
            plan.findings += self._check(doc, substance, line, year, demand)
            plan.steps.append(
                self._import_step(
                    doc_id,
                    substance,
                    key,
                    grams,
                    undrawn_before,
                    undrawn_after,
                    links,
                    holding,
                )
            )
        for substance, holding in old.items():
            if substance not in _totals(doc, bases):
                plan.steps.append(functools.partial(self._close_import, holding))

    def _import_step(
        self,
        doc_id: str,
        substance: str,
        key: Key,
        grams: Decimal,
        undrawn_before: Decimal,
        undrawn_after: Decimal,
        links: list[tuple[Holding, Decimal]],
        previous: Holding | None,
    ) -> Callable[[], None]:
        def step() -> None:
            if previous is not None and previous.key != key and previous.open:
                self._reserve(previous.key, -previous.reserved)
                previous.reserved = ZERO
            holding = self._holding(
                doc_id, substance, DocType.IMPORT_AUTHORIZATION, key
            )
            same_key = previous is not None and previous.key == key
            self._reserve(key, undrawn_after - (undrawn_before if same_key else ZERO))
            holding.country, holding.year = key[0], key[2]
            holding.quantity, holding.reserved, holding.open = (
                grams,
                undrawn_after,
                True,
            )
            for ea, take in links:
                # the drawn grams move from the export's own key to this one
                self._reserve(ea.key, -take)
                self._reserve(key, take)
                ea.reserved -= take
                ea.drawn, ea.ia_holding_id = take, holding.id
                holding.drawn += take
                self._touch(ea)
            self._touch(holding)

        return step

    def _waiting_exports(self, ia_doc_id: str) -> dict[str, list[Holding]]:
        """Open export holdings of documents waiting for this import authorization."""
        out: dict[str, list[Holding]] = defaultdict(list)
        for doc_id in self.waiting.get(ia_doc_id, ()):
            for holding in self.by_doc.get(doc_id, {}).values():
                if holding.open and holding.ia_holding_id is None:
                    out[holding.substance].append(holding)
        return out

    waiting: Mapping[str, list[str]] = {}
    """Import authorization id -> ids of export authorizations that quote it but
    arrived first; set by the ingest batch."""

    # export authorizations

    def _plan_export(
        self,
        plan: Plan,
        doc: Document,
        doc_id: str,
        bases: Mapping[int, Decimal],
        previous_id: str | None,
        target_id: str | None,
    ) -> None:
        country, year = doc.importing_country or "", doc.issue_date.year
        old = dict(self.by_doc.get(doc_id, {})) if previous_id else {}
        ia_holdings = self.by_doc.get(target_id, {}) if target_id else {}
        for substance, (grams, line) in _totals(doc, bases).items():
            key = (country, substance, year)
            previous = old.get(substance)
            ia = ia_holdings.get(substance)
            if ia is not None and not ia.open:
                ia = None
            own_draw = (
                previous.drawn
                if previous and previous.open and ia and previous.ia_holding_id == ia.id
                else ZERO
            )
            allowance = (ia.quantity - ia.drawn + own_draw) if ia else ZERO
            take = min(grams, max(allowance, ZERO))
            fresh = grams - take
            before = previous.reserved if previous and previous.open else ZERO
            plan.findings += self._check(doc, substance, line, year, fresh - before)
            plan.steps.append(
                self._export_step(
                    doc_id, substance, key, grams, take, fresh, ia, previous
                )
            )
        for substance, holding in old.items():
            if substance not in _totals(doc, bases):
                plan.steps.append(functools.partial(self._close_export, holding))

    def _export_step(
        self,
        doc_id: str,
        substance: str,
        key: Key,
        grams: Decimal,
        take: Decimal,
        fresh: Decimal,
        ia: Holding | None,
        previous: Holding | None,
    ) -> Callable[[], None]:
        def step() -> None:
            if previous is not None and previous.open:
                self._close_export(previous)
            holding = self._holding(
                doc_id, substance, DocType.EXPORT_AUTHORIZATION, key
            )
            holding.country, holding.year, holding.quantity = key[0], key[2], grams
            holding.open, holding.reserved = True, fresh
            self._reserve(key, fresh)
            holding.drawn, holding.ia_holding_id = ZERO, None
            if ia is not None and take > ZERO:
                # the drawn grams stay reserved on the import's key, held by the export
                ia.drawn += take
                ia.reserved -= take
                holding.drawn, holding.ia_holding_id = take, ia.id
                self._touch(ia)
            self._touch(holding)

        return step

    # endorsements

    def _plan_endorsement(
        self,
        plan: Plan,
        doc: Document,
        doc_id: str,
        bases: Mapping[int, Decimal],
        target_id: str | None,
    ) -> None:
        country = doc.issuer
        year = _year(doc.receipt_date or doc.expired_without_import)
        received = _totals(doc, bases)

        def step() -> None:
            for holding in self.by_doc.get(doc_id, {}).values():
                if holding.consumed_year is not None:
                    self._consume(
                        (holding.country, holding.substance, holding.consumed_year),
                        -holding.consumed,
                    )
                    holding.consumed = ZERO
                    self._touch(holding)
            if target_id:
                for ea in self.by_doc.get(target_id, {}).values():
                    if ea.open:
                        self._release_export(ea, give_back=False)
            for substance, (grams, _line) in received.items():
                holding = self._holding(
                    doc_id, substance, DocType.ENDORSEMENT, (country, substance, year)
                )
                holding.country, holding.year, holding.quantity = country, year, grams
                holding.consumed, holding.consumed_year, holding.open = (
                    grams,
                    year,
                    False,
                )
                self._consume((country, substance, year), grams)
                self._touch(holding)

        plan.steps.append(step)

    # releases: cancellation, expiry, endorsement

    def _release_export(self, ea: Holding, *, give_back: bool) -> None:
        """Release what an export holds; ``give_back`` returns its draw."""
        self._reserve(ea.key, -ea.reserved)
        ia = self.by_id.get(ea.ia_holding_id) if ea.ia_holding_id else None
        if ea.drawn and ia is not None:
            if give_back and ia.open:
                ia.drawn -= ea.drawn
                ia.reserved += ea.drawn  # stays reserved, by the import again
            else:
                self._reserve(ia.key, -ea.drawn)
                if give_back:
                    ia.drawn -= ea.drawn
            self._touch(ia)
        ea.reserved, ea.open = ZERO, False
        if give_back:
            ea.drawn = ZERO
        self._touch(ea)

    def _close_export(self, ea: Holding) -> None:
        if ea.open:
            self._release_export(ea, give_back=True)

    def _close_import(self, ia: Holding) -> None:
        if ia.open:
            self._reserve(ia.key, -ia.reserved)
            ia.reserved, ia.open = ZERO, False
            self._touch(ia)

    def close(self, doc_id: str, doc_type: str) -> None:
        """Undo what a cancelled or expired document holds (not endorsements)."""
        for holding in list(self.by_doc.get(doc_id, {}).values()):
            if doc_type == DocType.IMPORT_AUTHORIZATION:
                self._close_import(holding)
            elif doc_type == DocType.EXPORT_AUTHORIZATION:
                self._close_export(holding)
            elif holding.consumed_year is not None and holding.consumed:
                self._consume(
                    (holding.country, holding.substance, holding.consumed_year),
                    -holding.consumed,
                )
                holding.consumed = ZERO
                self._touch(holding)

    # ----- writing ------------------------------------------------------------------

    def flush(self) -> None:
        """Write the batch's balance and holding changes."""
        b, h = store.balances, store.holdings
        updates = [
            {
                "b_id": bal.id,
                "b_reserved": bal.reserved,
                "b_consumed": bal.consumed,
                "b_at": self.now,
            }
            for bal in self.balances.values()
            if bal.dirty
        ]
        if updates:
            from sqlalchemy import bindparam

            self.conn.execute(
                b.update()
                .where(b.c.id == bindparam("b_id"))
                .values(
                    reserved=bindparam("b_reserved"),
                    consumed=bindparam("b_consumed"),
                    updated_at=bindparam("b_at"),
                ),
                updates,
            )
        new: list[tuple[Any, ...]] = []
        changed: list[dict[str, Any]] = []
        for x in self.by_id.values():
            if x.new:
                new.append(_values(x))
            elif x.dirty:
                changed.append({f"b_{k}": v for k, v in self._row(x).items()})
            x.new = x.dirty = False
        store.insert_tuples(self.conn, h, HOLDING_COLUMNS, new)
        if changed:
            from sqlalchemy import bindparam

            self.conn.execute(
                h.update()
                .where(h.c.id == bindparam("b_id"))
                .values({c: bindparam(f"b_{c}") for c in HOLDING_CHANGES}),
                changed,
            )
        for bal in self.balances.values():
            bal.dirty = False

    @staticmethod
    def _row(x: Holding) -> dict[str, Any]:
        return dict(zip(HOLDING_COLUMNS, _values(x), strict=True))


HOLDING_COLUMNS = (
    "id",
    "document_id",
    "substance",
    "kind",
    "country",
    "year",
    "quantity",
    "reserved",
    "drawn",
    "ia_holding_id",
    "consumed",
    "consumed_year",
    "open",
)


HOLDING_CHANGES = tuple(
    c for c in HOLDING_COLUMNS if c not in ("id", "document_id", "substance", "kind")
)
"""The columns a stored holding's change may update (not what identifies it)."""


def _values(x: Holding) -> tuple[Any, ...]:
    """A holding's stored values, in the order of HOLDING_COLUMNS."""
    return (
        x.id,
        x.document_id,
        x.substance,
        str(x.kind),
        x.country,
        x.year,
        x.quantity,
        x.reserved,
        x.drawn,
        x.ia_holding_id,
        x.consumed,
        x.consumed_year,
        x.open,
    )


# ----- queries --------------------------------------------------------------------


def figure_in_force(
    conn: Connection, country: str, substance: str, year: int, narcotic: bool
) -> Decimal | None:
    """The estimate or assessment in force for (country, substance, year).

    Estimates are per year: the latest confirmed figure for that year. Assessments
    stay in force until changed: the latest confirmed among those whose first year is
    the greatest first year not after ``year``.
    """
    e = store.estimates
    query = select(e.c.grams).where(e.c.country == country, e.c.substance == substance)
    if narcotic:
        query = query.where(e.c.kind == "estimate", e.c.year == year)
        query = query.order_by(e.c.confirmed_on.desc(), e.c.id.desc())
    else:
        query = query.where(e.c.kind == "assessment", e.c.year <= year)
        query = query.order_by(e.c.year.desc(), e.c.confirmed_on.desc(), e.c.id.desc())
    grams = conn.execute(query.limit(1)).scalar()
    return Decimal(grams) if grams is not None else None


def balances(
    conn: Connection,
    country: str,
    substance: str | None = None,
    year: int | None = None,
    narcotic_of: Callable[[str], bool] | None = None,
) -> list[dict[str, Any]]:
    """Balances for a country: figure in force, reserved, consumed, available (g).

    One row per (substance, year) that has an estimate, an assessment or ledger
    activity, filtered by ``substance`` and ``year`` when given.
    """
    b, e = store.balances, store.estimates
    keys: dict[tuple[str, int], tuple[Decimal, Decimal]] = {}
    query = select(b.c.substance, b.c.year, b.c.reserved, b.c.consumed).where(
        b.c.country == country
    )
    equery = select(e.c.substance, e.c.year, e.c.kind).where(e.c.country == country)
    if substance:
        query = query.where(b.c.substance == substance.lower())
        equery = equery.where(e.c.substance == substance.lower())
    if year:
        query = query.where(b.c.year == year)
        equery = equery.where(e.c.year <= year)
    for r in conn.execute(query):
        keys[(r.substance, r.year)] = (Decimal(r.reserved), Decimal(r.consumed))
    kinds: dict[str, str] = {}
    for e_row in conn.execute(equery):
        kinds[e_row.substance] = e_row.kind
        if e_row.kind == "estimate" and (year is None or e_row.year == year):
            keys.setdefault((e_row.substance, e_row.year), (ZERO, ZERO))
        elif e_row.kind == "assessment":
            keys.setdefault((e_row.substance, year or e_row.year), (ZERO, ZERO))
    out = []
    for (sub, yr), (reserved, consumed) in sorted(keys.items()):
        kind = kinds.get(sub)
        narcotic = (
            kind != "assessment"
            if kind
            else (narcotic_of(sub) if narcotic_of else True)
        )
        figure = figure_in_force(conn, country, sub, yr, narcotic)
        out.append(
            {
                "country": country,
                "substance": sub,
                "year": yr,
                "kind": "estimate" if narcotic else "assessment",
                "figure": float(figure) if figure is not None else None,
                "reserved": float(reserved),
                "consumed": float(consumed),
                "available": float(figure - reserved - consumed)
                if figure is not None
                else None,
            }
        )
    return out
