"""Shared helpers for the benchmarks: result files and generated documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
EXAMPLE = ROOT / "examples" / "import-authorization.xml"


def figure(
    name: str, value: float, unit: str, reference: str, reference_value: float
) -> dict[str, Any]:
    """One result entry: a figure and the reference it is compared with."""
    ratio = value / reference_value if reference_value else float("nan")
    print(
        f"{name}: {value:,.2f} {unit}  |  {reference}: {reference_value:,.2f} {unit}"
        f"  |  ratio {ratio:.3f}"
    )
    return {
        "name": name,
        "value": round(value, 3),
        "unit": unit,
        "reference": reference,
        "reference_value": round(reference_value, 3),
        "ratio": round(ratio, 3),
    }


def write(name: str, entries: list[dict[str, Any]]) -> Path:
    """Write ``bench/results/<name>.json``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(entries, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")
    return path


def variants(count: int, prefix: str = "BENCH") -> list[bytes]:
    """``count`` distinct import authorizations derived from the example."""
    text = EXAMPLE.read_bytes()
    marker = b"KE-IA-2026-00042"
    return [text.replace(marker, f"{prefix}-{i:08d}".encode()) for i in range(count)]


def batch_file(path: Path, count: int, prefix: str = "BENCH") -> Path:
    """A canonical Batch file of ``count`` documents, written as a stream."""
    text = EXAMPLE.read_bytes()
    body = text[text.index(b"<ImportAuthorization") :]
    marker = b"KE-IA-2026-00042"
    with path.open("wb") as fh:
        fh.write(
            b'<?xml version="1.0" encoding="UTF-8"?>\n'
            b'<Batch xmlns="urn:i2es-hub:canonical:1">\n'
        )
        for i in range(count):
            fh.write(body.replace(marker, f"{prefix}-{i:08d}".encode()))
        fh.write(b"</Batch>\n")
    return path
