"""Reference data: substances, their forms and anhydrous-base conversion factors.

Reference lists are versioned by effective date: a document is checked against the
list in force on its issue date, so a new INCB list can be loaded without rewriting
history. The lists live in the database (loaded by ``db upgrade`` and
``i2es-hub reference load``); this module parses them and converts quantities.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from i2es_hub.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

BUILTIN_REFERENCE = Path(__file__).parent / "data" / "reference.yaml"

GRAMS_PER_UNIT = {"g": Decimal(1), "kg": Decimal(1000), "mg": Decimal("0.001")}


@dataclass(frozen=True, slots=True)
class Substance:
    """A controlled substance: INN (or schedule designation), convention, schedule."""

    name: str
    convention: str
    schedule: str

    @property
    def is_narcotic(self) -> bool:
        """True for 1961 narcotic drugs (estimates); False for 1971 (assessments)."""
        return self.convention == "1961"


@dataclass(frozen=True, slots=True)
class ReferenceList:
    """One version of the reference data, in force from ``effective_from``."""

    effective_from: dt.date
    source: str
    substances: dict[str, Substance]
    factors: dict[tuple[str, str], Decimal]

    def substance(self, name: str) -> Substance | None:
        """The substance by name, case-insensitive, or None."""
        return self.substances.get(name.strip().lower())

    def factor(self, substance: str, form: str) -> Decimal | None:
        """Grams of anhydrous base per gram of ``form``, or None when unknown."""
        return self.factors.get((substance.strip().lower(), form.strip().lower()))


def parse_reference(data: Any, origin: str) -> ReferenceList:
    """Validate a reference document (the YAML layout of data/reference.yaml).

    Raises:
        ConfigError: naming ``origin``, the entry and what is wrong.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping with 'substances'")
    try:
        effective = data["effective_from"]
        if isinstance(effective, str):
            effective = dt.date.fromisoformat(effective)
        if not isinstance(effective, dt.date):
            raise ValueError("effective_from must be a date (YYYY-MM-DD)")
        substances: dict[str, Substance] = {}
        factors: dict[tuple[str, str], Decimal] = {}
        for i, entry in enumerate(data["substances"], start=1):
            name = str(entry["name"]).strip().lower()
            convention = str(entry["convention"])
            schedule = str(entry["schedule"])
            if convention not in ("1961", "1971"):
                raise ValueError(
                    f"substance {i} ({name}): convention must be 1961 or 1971"
                )
            if schedule not in ("I", "II", "III", "IV"):
                raise ValueError(f"substance {i} ({name}): schedule must be I-IV")
            substances[name] = Substance(name, convention, schedule)
            factors[(name, name)] = Decimal(1)
            for form, factor in (entry.get("forms") or {}).items():
                value = Decimal(str(factor))
                if not Decimal(0) < value <= Decimal(1):
                    raise ValueError(f"{name} / {form}: factor {value} not in (0, 1]")
                factors[(name, str(form).strip().lower())] = value
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise ConfigError(f"{origin}: invalid reference data: {exc}") from exc
    return ReferenceList(
        effective, str(data.get("source", origin)), substances, factors
    )


def load_reference_file(path: Path) -> ReferenceList:
    """Read and validate a reference YAML file."""
    import yaml  # here: the prepare stage imports this module at every CLI start

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read reference file {path}: {exc}") from exc
    return parse_reference(data, str(path))


def to_grams(
    quantity: Decimal, unit: str, strength: tuple[Decimal, str] | None
) -> Decimal:
    """Grams of the stated form: mass units convert; ``unit`` needs a strength.

    Raises:
        ValueError: a count of units without a strength per unit.
    """
    if unit == "unit":
        if strength is None:
            raise ValueError("quantity in units needs StrengthPerUnit")
        amount, strength_unit = strength
        return quantity * amount * GRAMS_PER_UNIT[strength_unit]
    return quantity * GRAMS_PER_UNIT[unit]


def base_grams(grams_of_form: Decimal, factor: Decimal) -> Decimal:
    """Grams of anhydrous base, rounded to the milligram."""
    return (grams_of_form * factor).quantize(Decimal("0.001"))


def reference_lists(conn: Connection) -> list[ReferenceList]:
    """Every stored reference list, oldest first."""
    # The database layer is imported here: the prepare process uses this module
    # and is started before it is loaded.
    from sqlalchemy import select

    from i2es_hub import store

    t = store.reference_lists
    rows = conn.execute(select(t.c.body).order_by(t.c.effective_from)).scalars()
    return [parse_reference(body, "database reference_lists") for body in rows]


def reference_for(lists: list[ReferenceList], day: dt.date) -> ReferenceList | None:
    """The list in force on ``day``: the latest whose effective date is not after it."""
    chosen = None
    for ref in lists:
        if ref.effective_from <= day:
            chosen = ref
    return chosen or (lists[0] if lists else None)
