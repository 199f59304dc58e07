"""Golden files per country: national input -> canonical output -> findings.

Regenerate after a deliberate mapping change with I2ES_HUB_REGEN_GOLDEN=1 and
review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from lxml import etree

from i2es_hub import canonical, xmlsafe
from i2es_hub.connectors import find_connector
from i2es_hub.ingest import Preparer, Submission
from i2es_hub.mapping import MappingError, compile_mapping
from i2es_hub.reference import BUILTIN_REFERENCE, load_reference_file

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("I2ES_HUB_REGEN_GOLDEN") == "1"
CASES = [
    ("ke-ppb", "import-authorization.xml"),
    ("ke-ppb", "endorsement-shortfall.xml"),
    ("de-bfarm", "export-authorizations.xml"),
    ("ch-swissmedic", "import-authorization.json"),
    ("ch-swissmedic", "endorsement-shortfall.json"),
]


def _mapping(name: str):
    return compile_mapping(find_connector(name).mapping)


def _sample(name: str, file: str) -> bytes:
    return (ROOT / "mappings" / name.split("-")[0] / "samples" / file).read_bytes()


def _check(path: Path, actual: str) -> None:
    if REGEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == actual, f"differs from {path}"


@pytest.mark.parametrize(("name", "file"), CASES)
def test_golden(name: str, file: str) -> None:
    connector = find_connector(name)
    result = _mapping(name).to_canonical(_sample(name, file), file)
    pretty = etree.tostring(
        xmlsafe.parse(result), pretty_print=True, encoding="unicode"
    )
    stem = file.rsplit(".", 1)[0]
    _check(GOLDEN / name / f"{stem}.canonical.xml", pretty)

    preparer = Preparer([load_reference_file(BUILTIN_REFERENCE)])
    findings = [
        {
            "document": c.doc.label if c.doc else None,
            "findings": [f"{f.severity} {f.code}" for f in c.findings],
        }
        for c in preparer.prepare(Submission(result, connector.country, name, file))
    ]
    _check(GOLDEN / name / f"{stem}.findings.json", json.dumps(findings, indent=2))
    assert all(c.doc is not None for c in preparer.prepare(Submission(result, "XX")))


@pytest.mark.parametrize(
    ("name", "example"),
    [
        ("ke-ppb", "import-authorization"),
        ("ke-ppb", "endorsement-shortfall"),
        ("de-bfarm", "import-authorization"),
        ("de-bfarm", "export-authorization"),
        ("de-bfarm", "endorsement"),
        ("ch-swissmedic", "export-authorization"),
        ("ch-swissmedic", "import-authorization"),
    ],
)
def test_outbound_then_inbound_gives_the_same_document(name: str, example: str) -> None:
    original = (ROOT / "examples" / f"{example}.xml").read_bytes()
    mapping = _mapping(name)
    national = mapping.to_national(original)
    if mapping.schema is not None:
        assert mapping.schema.validate(etree.fromstring(national)), (
            mapping.schema.error_log
        )
    back = xmlsafe.parse(mapping.to_canonical(national, "round-trip"))
    doc = back[0] if back.tag == canonical.BATCH else back
    doc = xmlsafe.parse(etree.tostring(doc))  # detach from the Batch
    assert etree.tostring(doc, method="c14n2") == etree.tostring(
        xmlsafe.parse(original), method="c14n2"
    )


def test_unknown_code_names_table_and_value() -> None:
    data = _sample("de-bfarm", "export-authorizations.xml").replace(
        b"Morphinsulfat-Pentahydrat", b"Morphinsulfat"
    )
    with pytest.raises(MappingError, match=r"'Morphinsulfat' is not in .*forms\.csv"):
        _mapping("de-bfarm").to_canonical(data, "BtM-AH-1.xml")


def test_json_missing_field_is_named() -> None:
    doc = json.loads(_sample("ch-swissmedic", "import-authorization.json"))
    del doc["items"][0]["quantity"]["unit"]
    with pytest.raises(MappingError, match=r"'items\[1\]\.quantity\.unit'"):
        _mapping("ch-swissmedic").to_canonical(json.dumps(doc).encode(), "x.json")


def test_doctype_is_refused_before_mapping() -> None:
    data = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>'
    with pytest.raises(MappingError) as caught:
        _mapping("ke-ppb").to_canonical(data, "evil.xml")
    assert caught.value.code == "UNSAFE_XML"


def test_xslt_cannot_read_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret")
    (tmp_path / "xx" / "codes").mkdir(parents=True)
    (tmp_path / "xx" / "in.xslt").write_text(
        '<xsl:stylesheet version="1.0" '
        'xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
        f'<xsl:template match="/"><o><xsl:copy-of select="document(\'{secret}\')"/>'
        "</o></xsl:template></xsl:stylesheet>"
    )
    monkeypatch.setenv("I2ES_HUB_MAPPINGS_DIR", str(tmp_path))
    from i2es_hub.mapping import CountryMapping, MappingSpec

    mapping = CountryMapping(MappingSpec("xx/in.xslt", "xx/in.xslt", "xx/codes"))
    with pytest.raises(MappingError):
        mapping.to_canonical(b"<a/>", "a.xml")
