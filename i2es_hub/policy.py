"""Per-country policy: which warnings hold a document for an operator's decision."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from i2es_hub.errors import ConfigError
from i2es_hub.findings import SEVERITY, Finding, Severity


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

    @classmethod
    def from_mapping(cls, data: Any, origin: str) -> Policy:
        """Build from ``{COUNTRY: {hold: [CODE, ...]}}``; errors name origin and key."""
        if not isinstance(data, dict):
            raise ConfigError(f"{origin}: expected a mapping of country codes")
        warnings = {c.value for c, s in SEVERITY.items() if s == Severity.WARNING}
        hold: dict[str, frozenset[str]] = {}
        for country, entry in data.items():
            codes = entry.get("hold") if isinstance(entry, dict) else None
            if not isinstance(codes, list):
                raise ConfigError(f"{origin}: {country}.hold must be a list of codes")
            unknown = sorted(set(codes) - warnings)
            if unknown:
                raise ConfigError(
                    f"{origin}: {country}.hold: {', '.join(unknown)} are not warning "
                    f"codes; choose from {', '.join(sorted(warnings))}"
                )
            hold[str(country).upper()] = frozenset(codes)
        return cls(hold)

    @classmethod
    def from_file(cls, path: Path) -> Policy:
        """Read a policy YAML file."""
        import yaml  # here: every ingest imports this module, few read a policy file

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read policy file {path}: {exc}") from exc
        return cls.from_mapping(data, str(path))
