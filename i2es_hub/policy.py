"""Per-country policy: which warnings hold a document for an operator's decision."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from i2es_hub.findings import Finding, Severity


@dataclass(frozen=True)
class Policy:
    """Warning codes to turn into ``hold``, per issuing country.

    Attributes:
        hold: Country code -> finding codes that hold that country's documents.
    """

    hold: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def apply(self, country: str, findings: list[Finding]) -> list[Finding]:
        """The findings with the country's chosen warnings raised to ``hold``."""
        codes = self.hold.get(country)
        if not codes:
            return findings
        return [
            replace(f, severity=Severity.HOLD.value)
            if f.severity == Severity.WARNING and f.code in codes
            else f
            for f in findings
        ]
