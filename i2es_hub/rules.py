"""The treaty rules that need no estimate ledger.

Two kinds: :func:`document_findings` looks at one document and the reference data;
:func:`reference_findings` compares an export authorization with the import
authorization it quotes, and :func:`endorsement_findings` an endorsement with its
export authorization. Each returns findings as data; the ingest pipeline decides the
outcome from their severities.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from i2es_hub.canonical import DocType, Document, Line, Party
from i2es_hub.findings import Code, Finding
from i2es_hub.reference import ReferenceList, base_grams, to_grams

TRADE_TYPES = (
    DocType.IMPORT_AUTHORIZATION,
    DocType.EXPORT_AUTHORIZATION,
    DocType.EXPORT_DECLARATION,
)

# 1961 art. 31(9): no consignment to a post office box. Common spellings worldwide.
_POST_BOX = re.compile(
    r"\b(p\.?\s*o\.?\s*box|post\s*office\s*box|postbox|p\.?o\.?b\.?\s*\d|"
    r"bo[iî]te\s+postale|b\.?p\.?\s+\d|apartado(\s+postal)?|casilla(\s+de\s+correo)?|"
    r"postfach|caixa\s+postal|private\s+bag)\b",
    re.IGNORECASE,
)


def _blank(value: str) -> bool:
    return not value or not value.strip()


def _party_gaps(role: str, party: Party | None) -> list[str]:
    if party is None:
        return [role]
    gaps = []
    if _blank(party.name):
        gaps.append(f"{role} name")
    if not any(s.strip() for s in party.street) or _blank(party.city):
        gaps.append(f"{role} address")
    if _blank(party.country):
        gaps.append(f"{role} country")
    return gaps


def _missing_fields(doc: Document) -> list[Finding]:
    gaps: list[tuple[str, int | None]] = []
    if _blank(doc.authority):
        gaps.append(("issuing authority", None))
    if doc.doc_type in TRADE_TYPES:
        gaps += [(g, None) for g in _party_gaps("importer", doc.importer)]
        gaps += [(g, None) for g in _party_gaps("exporter", doc.exporter)]
        if doc.validity_from is None or doc.validity_until is None:
            gaps.append(("validity period", None))
    if doc.doc_type is DocType.ENDORSEMENT and _blank(doc.endorsing_authority):
        gaps.append(("endorsing authority", None))
    for line in doc.lines:
        if _blank(line.substance):
            gaps.append(("substance", line.number))
        if _blank(line.form):
            gaps.append(("salt or hydrate form", line.number))
    return [
        Finding.of(
            Code.MISSING_TREATY_FIELD,
            f"{doc.label}: the {name} is empty"
            + (f" on line {line_no}" if line_no else "")
            + "; the conventions require it",
            line=line_no,
        )
        for name, line_no in gaps
    ]


def _period(doc: Document) -> list[Finding]:
    start, end = doc.validity_from, doc.validity_until
    if start is None or end is None:
        return []
    if end < start:
        return [
            Finding.of(
                Code.INVALID_PERIOD,
                f"{doc.label}: validity ends {end} before it starts {start}",
            )
        ]
    if doc.issue_date > end:
        return [
            Finding.of(
                Code.INVALID_PERIOD,
                f"{doc.label}: issued {doc.issue_date}, after its own validity "
                f"ended {end}",
            )
        ]
    return []


def _substances(
    doc: Document, ref: ReferenceList
) -> tuple[list[Finding], dict[int, Decimal]]:
    findings: list[Finding] = []
    bases: dict[int, Decimal] = {}
    for line in doc.lines:
        if _blank(line.substance):
            continue
        substance = ref.substance(line.substance)
        factor = ref.factor(line.substance, line.form)
        if substance is None or factor is None:
            what = (
                f"substance {line.substance!r}"
                if substance is None
                else f"form {line.form!r} of {substance.name}"
            )
            findings.append(
                Finding.of(
                    Code.UNKNOWN_SUBSTANCE,
                    f"{doc.label} line {line.number}: {what} is not in the reference "
                    f"list in force ({ref.source}, from {ref.effective_from}); use "
                    "the INN and a listed salt or hydrate form",
                    line=line.number,
                )
            )
            continue
        try:
            grams = to_grams(line.quantity, line.unit, line.strength)
        except ValueError as exc:
            findings.append(
                Finding.of(
                    Code.MISSING_TREATY_FIELD,
                    f"{doc.label} line {line.number}: {exc}",
                    line=line.number,
                )
            )
            continue
        bases[line.number] = (
            line.base_quantity
            if line.base_quantity is not None and line.unit != "unit"
            else base_grams(grams, factor)
        )
    return findings, bases


def _bonded_and_post_box(doc: Document, ref: ReferenceList) -> list[Finding]:
    findings = []
    if doc.bonded_warehouse:
        for line in doc.lines:
            sub = ref.substance(line.substance)
            if sub is not None and sub.convention == "1971" and sub.schedule == "I":
                findings.append(
                    Finding.of(
                        Code.BONDED_WAREHOUSE_FORBIDDEN,
                        f"{doc.label} line {line.number}: {sub.name} is in Schedule I "
                        "of the 1971 Convention and may not be consigned to a bonded "
                        "warehouse",
                        line=line.number,
                    )
                )
    importer = doc.importer
    if importer is not None:
        for street in importer.street:
            if _POST_BOX.search(street):
                findings.append(
                    Finding.of(
                        Code.POST_BOX_CONSIGNEE,
                        f"{doc.label}: importer address {street!r} is a post office "
                        "box; 1961 art. 31(9) requires a street address",
                    )
                )
                break
    return findings


def document_findings(
    doc: Document, ref: ReferenceList | None
) -> tuple[list[Finding], dict[int, Decimal]]:
    """Rules on the document alone; also returns base grams per line number."""
    findings = _missing_fields(doc) + _period(doc)
    bases: dict[int, Decimal] = {}
    if ref is None:
        return findings, bases
    sub_findings, bases = _substances(doc, ref)
    findings += sub_findings + _bonded_and_post_box(doc, ref)
    if doc.doc_type is DocType.EXPORT_AUTHORIZATION and doc.emergency:
        findings.append(
            Finding.of(
                Code.EMERGENCY_EXPORT,
                f"{doc.label}: sent under the emergency flag; import authorization "
                "and estimate checks were bypassed and the bypass recorded",
            )
        )
    return findings, bases


# ----- export authorization against its import authorization --------------------


@dataclass(slots=True)
class StoredAuthorization:
    """What the rules need of a stored import or export authorization.

    Read-only by convention, not frozen: the commit stage makes one for every
    document it stores, and a frozen dataclass sets each field the slow way.
    """

    id: str
    doc: Document
    bases: dict[int, Decimal]

    def totals(self) -> dict[str, Decimal]:
        """Base grams per substance."""
        out: dict[str, Decimal] = defaultdict(Decimal)
        for line in self.doc.lines:
            out[line.substance.lower()] += self.bases.get(line.number, Decimal(0))
        return dict(out)


def _norm(value: str) -> str:
    return " ".join(value.lower().split())


def reference_findings(
    ea: Document,
    ea_bases: dict[int, Decimal],
    ia: StoredAuthorization | None,
    drawn_before: dict[str, Decimal],
) -> list[Finding]:
    """Compare an export authorization with the import authorization it quotes.

    Args:
        ea: The export authorization.
        ea_bases: Its base grams per line number.
        ia: The quoted import authorization, or None when the hub has not seen it.
        drawn_before: Base grams per substance that other export authorizations
            already drew on ``ia``.
    """
    quoted = ea.ref
    if ea.emergency or quoted is None:
        return []
    if ia is None:
        return [
            Finding.of(
                Code.IMPORT_AUTHORIZATION_NOT_FOUND,
                f"{ea.label}: quotes import authorization {quoted.country}/"
                f"{quoted.number}, which the hub has not received (paper or another "
                "channel); it will be linked when it arrives",
            )
        ]
    iad = ia.doc
    mismatches = []
    if quoted.issue_date and quoted.issue_date != iad.issue_date:
        mismatches.append(f"issue date {quoted.issue_date} vs {iad.issue_date}")
    if quoted.authority and _norm(quoted.authority) != _norm(iad.authority):
        mismatches.append(f"authority {quoted.authority!r} vs {iad.authority!r}")
    for role, a, b in (
        ("importer", ea.importer, iad.importer),
        ("exporter", ea.exporter, iad.exporter),
    ):
        if a is None or b is None:
            continue
        if _norm(a.name) != _norm(b.name):
            mismatches.append(f"{role} {a.name!r} vs {b.name!r}")
        if a.country != b.country:
            mismatches.append(f"{role} country {a.country} vs {b.country}")
    ia_totals = ia.totals()
    for line in ea.lines:
        if line.substance.lower() not in ia_totals:
            mismatches.append(
                f"line {line.number} substance {line.substance!r} is not "
                "on the import authorization"
            )
    if mismatches:
        return [
            Finding.of(
                Code.IMPORT_AUTHORIZATION_MISMATCH,
                f"{ea.label}: differs from import authorization {iad.issuer}/"
                f"{iad.number}: " + "; ".join(mismatches),
            )
        ]

    findings = []
    if (
        ea.validity_from
        and iad.validity_from
        and ea.validity_until
        and iad.validity_until
        and (
            ea.validity_from < iad.validity_from
            or ea.validity_until > iad.validity_until
        )
    ):
        findings.append(
            Finding.of(
                Code.OUTSIDE_VALIDITY,
                f"{ea.label}: valid {ea.validity_from} to {ea.validity_until}, not "
                f"inside import authorization {iad.number} ({iad.validity_from} to "
                f"{iad.validity_until})",
            )
        )
    wanted: dict[str, Decimal] = defaultdict(Decimal)
    for line in ea.lines:
        wanted[line.substance.lower()] += ea_bases.get(line.number, Decimal(0))
    for substance, grams in wanted.items():
        allowed = ia_totals.get(substance, Decimal(0))
        before = drawn_before.get(substance, Decimal(0))
        if before + grams > allowed:
            findings.append(
                Finding.of(
                    Code.IMPORT_AUTHORIZATION_EXHAUSTED,
                    f"{ea.label}: {substance} {grams} g base with {before} g already "
                    f"exported under import authorization {iad.number} exceeds its "
                    f"{allowed} g by {before + grams - allowed} g",
                    figures={
                        "substance": substance,
                        "allowed": str(allowed),
                        "drawn_before": str(before),
                        "this_document": str(grams),
                        "excess": str(before + grams - allowed),
                    },
                )
            )
    return findings


def _by_substance(
    lines: tuple[Line, ...], bases: dict[int, Decimal]
) -> dict[str, Decimal]:
    out: dict[str, Decimal] = defaultdict(Decimal)
    for line in lines:
        out[line.substance.lower()] += bases.get(line.number, Decimal(0))
    return out


def endorsement_findings(
    en: Document,
    en_bases: dict[int, Decimal],
    ea: StoredAuthorization | None,
) -> list[Finding]:
    """Compare an endorsement's received quantities with its export authorization."""
    quoted = en.ref
    assert quoted is not None  # the schema requires the reference
    if ea is None:
        return [
            Finding.of(
                Code.EXPORT_AUTHORIZATION_NOT_FOUND,
                f"{en.label}: endorses export authorization {quoted.country}/"
                f"{quoted.number}, which the hub has not received",
            )
        ]
    findings = []
    received = _by_substance(en.lines, en_bases)
    allowed = _by_substance(ea.doc.lines, ea.bases)
    for substance, grams in allowed.items():
        got = received.get(substance, Decimal(0))
        figures = {
            "substance": substance,
            "authorized": str(grams),
            "received": str(got),
            "difference": str(got - grams),
        }
        where = (
            f"export authorization {ea.doc.issuer}/{ea.doc.number}: {substance} "
            f"authorized {grams} g base, received {got} g"
        )
        if got < grams:
            findings.append(
                Finding.of(
                    Code.SHORTFALL,
                    f"{en.label} for {where}, {grams - got} g short",
                    figures=figures,
                )
            )
        elif got > grams:
            findings.append(
                Finding.of(
                    Code.EXCESS_RECEIPT,
                    f"{en.label} for {where}, {got - grams} g more than authorized",
                    figures=figures,
                )
            )
    for substance, got in received.items():
        if substance not in allowed and got > 0:
            findings.append(
                Finding.of(
                    Code.EXCESS_RECEIPT,
                    f"{en.label}: received {got} g base of {substance}, which export "
                    f"authorization {ea.doc.number} does not authorize",
                    figures={
                        "substance": substance,
                        "authorized": "0",
                        "received": str(got),
                    },
                )
            )
    return findings
