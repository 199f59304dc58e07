"""Loading estimates, assessments and import prohibitions from CSV files.

Estimates (narcotic drugs) are per calendar year; a later ``confirmed_on`` for the
same country, substance and year supersedes the earlier figure (supplementary
estimates). Assessments (psychotropic substances) give the first year in force.
A file with any malformed row loads nothing, and the error names the line.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from sqlalchemy import select
from sqlalchemy.engine import Connection

from i2es_hub import store
from i2es_hub.errors import ConfigError

ESTIMATE_HEADER = ["country", "substance", "year", "kind", "grams", "confirmed_on"]
PROHIBITION_HEADER = ["country", "substance", "since"]
_COUNTRY = re.compile(r"^[A-Z]{2}$")


@dataclass(frozen=True, slots=True)
class EstimateRow:
    """One confirmed estimate or assessment figure."""

    country: str
    substance: str
    year: int
    kind: str
    grams: Decimal
    confirmed_on: dt.date


@dataclass(frozen=True, slots=True)
class Prohibition:
    """A country's notified prohibition of a substance (1971 art. 13)."""

    country: str
    substance: str
    since: dt.date


def _rows(
    text: str, origin: str, header: list[str]
) -> list[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    found = [h.strip() for h in (reader.fieldnames or [])]
    if found != header:
        raise ConfigError(
            f"{origin} line 1: header is {','.join(found) or '(empty)'}; expected "
            f"{','.join(header)}"
        )
    return [
        (n, {k.strip(): (v or "").strip() for k, v in row.items() if k})
        for n, row in enumerate(reader, start=2)
    ]


def _country(value: str, origin: str, line: int) -> str:
    if not _COUNTRY.match(value):
        raise ConfigError(
            f"{origin} line {line}: country {value!r} is not an ISO "
            "3166-1 alpha-2 code such as KE"
        )
    return value


def _date(value: str, origin: str, line: int, column: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(
            f"{origin} line {line}: {column} {value!r} is not a date (YYYY-MM-DD)"
        ) from exc


def parse_estimates(text: str, origin: str) -> list[EstimateRow]:
    """Validate an estimates CSV; raises ConfigError naming the first bad line."""
    out = []
    for line, row in _rows(text, origin, ESTIMATE_HEADER):
        kind = row["kind"]
        if kind not in ("estimate", "assessment"):
            raise ConfigError(
                f"{origin} line {line}: kind {kind!r} must be estimate or assessment"
            )
        try:
            year = int(row["year"])
            grams = Decimal(row["grams"])
        except (ValueError, InvalidOperation) as exc:
            raise ConfigError(
                f"{origin} line {line}: year {row['year']!r} and grams "
                f"{row['grams']!r} must be numbers"
            ) from exc
        if not 1961 <= year <= 2200:
            raise ConfigError(f"{origin} line {line}: year {year} is out of range")
        if not grams.is_finite() or grams < 0:
            raise ConfigError(
                f"{origin} line {line}: grams {row['grams']!r} must be "
                "a finite number of grams, zero or more"
            )
        if not row["substance"]:
            raise ConfigError(f"{origin} line {line}: substance is empty")
        out.append(
            EstimateRow(
                _country(row["country"], origin, line),
                row["substance"].lower(),
                year,
                kind,
                grams,
                _date(row["confirmed_on"], origin, line, "confirmed_on"),
            )
        )
    return out


def load_estimates(conn: Connection, rows: list[EstimateRow], source: str) -> int:
    """Store figures; a figure already loaded (same key and date) is kept once."""
    e = store.estimates
    loaded = 0
    now = store.utcnow()
    for r in rows:
        exists = conn.execute(
            select(e.c.id).where(
                e.c.country == r.country,
                e.c.substance == r.substance,
                e.c.kind == r.kind,
                e.c.year == r.year,
                e.c.confirmed_on == r.confirmed_on,
            )
        ).scalar()
        if exists is not None:
            conn.execute(
                e.update()
                .where(e.c.id == exists)
                .values(grams=r.grams, source=source[:512], loaded_at=now)
            )
        else:
            conn.execute(
                e.insert().values(
                    country=r.country,
                    substance=r.substance,
                    kind=r.kind,
                    year=r.year,
                    grams=r.grams,
                    confirmed_on=r.confirmed_on,
                    source=source[:512],
                    loaded_at=now,
                )
            )
        loaded += 1
    return loaded


def parse_prohibitions(text: str, origin: str) -> list[Prohibition]:
    """Validate a prohibitions CSV (country,substance,since)."""
    out = []
    for line, row in _rows(text, origin, PROHIBITION_HEADER):
        if not row["substance"]:
            raise ConfigError(f"{origin} line {line}: substance is empty")
        out.append(
            Prohibition(
                _country(row["country"], origin, line),
                row["substance"].lower(),
                _date(row["since"], origin, line, "since"),
            )
        )
    return out


def load_prohibitions(conn: Connection, rows: list[Prohibition]) -> int:
    """Store prohibitions; repeats are kept once."""
    p = store.prohibitions
    now = store.utcnow()
    count = 0
    for r in rows:
        exists = conn.execute(
            select(p.c.id).where(
                p.c.country == r.country,
                p.c.substance == r.substance,
                p.c.since == r.since,
            )
        ).scalar()
        if exists is None:
            conn.execute(
                p.insert().values(
                    country=r.country,
                    substance=r.substance,
                    since=r.since,
                    loaded_at=now,
                )
            )
            count += 1
    return count
