"""Safe XML intake and canonical validation: hostile input is refused clearly."""

from __future__ import annotations

import pytest

from i2es_hub import canonical, xmlsafe
from tests.conftest import EXAMPLES

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<ImportAuthorization xmlns="urn:i2es-hub:canonical:1">&lol3;</ImportAuthorization>"""

XXE_FILE = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<ImportAuthorization xmlns="urn:i2es-hub:canonical:1">&secret;</ImportAuthorization>"""

XXE_URL = b"""<?xml version="1.0"?>
<!DOCTYPE x SYSTEM "http://127.0.0.1:9/evil.dtd">
<ImportAuthorization xmlns="urn:i2es-hub:canonical:1"/>"""


@pytest.mark.parametrize(
    "data",
    [BILLION_LAUGHS, XXE_FILE, XXE_URL],
    ids=["billion-laughs", "xxe-file", "external-dtd"],
)
def test_doctype_is_refused_before_any_expansion(data: bytes) -> None:
    with pytest.raises(xmlsafe.UnsafeXML, match="DOCTYPE"):
        xmlsafe.parse(data)


def test_utf16_doctype_is_refused_too() -> None:
    with pytest.raises(xmlsafe.UnsafeXML, match="DOCTYPE"):
        xmlsafe.parse(
            XXE_FILE.replace(b'version="1.0"', b'version="1.0" encoding="UTF-16"')
            .decode()
            .encode("utf-16")
        )


def test_oversized_document_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xmlsafe, "MAX_DOCUMENT_BYTES", 1000)
    with pytest.raises(xmlsafe.UnsafeXML, match="over the limit of 1000 bytes"):
        xmlsafe.parse((EXAMPLES / "import-authorization.xml").read_bytes())


def test_malformed_xml_reports_the_line() -> None:
    data = b"<?xml version='1.0'?>\n<a>\n<b>\n</a>"
    with pytest.raises(xmlsafe.MalformedXML) as info:
        xmlsafe.parse(data)
    assert info.value.line == 4
    assert "not well-formed" in str(info.value)


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.xml")))
def test_examples_are_valid_canonical_documents(name: str) -> None:
    root = xmlsafe.parse((EXAMPLES / name).read_bytes())
    assert canonical.schema_findings(root, name) == []
    doc = canonical.read_document(root)
    assert doc.number and doc.issuer in ("KE", "DE")


def test_schema_error_names_path_and_line() -> None:
    data = (EXAMPLES / "import-authorization.xml").read_bytes()
    data = data.replace(b"<City>Nairobi</City>", b"")
    root = xmlsafe.parse(data)
    findings = canonical.schema_findings(root, "KE import-authorization")
    assert findings, "a missing City must be reported"
    first = findings[0]
    assert first.code == "SCHEMA_INVALID" and first.severity == "error"
    assert first.path == "/ImportAuthorization/Importer/Address"
    assert first.source_line == 13
    assert "City" in first.message and "line 13" in first.message


def test_impossible_date_is_a_schema_error() -> None:
    data = (EXAMPLES / "import-authorization.xml").read_bytes()
    data = data.replace(
        b"<IssueDate>2026-03-02</IssueDate>", b"<IssueDate>2026-02-30</IssueDate>"
    )
    findings = canonical.schema_findings(xmlsafe.parse(data), "x")
    assert any("2026-02-30" in f.message for f in findings)


def test_content_digest_ignores_layout_but_not_content() -> None:
    data = (EXAMPLES / "import-authorization.xml").read_bytes()
    compact = b"><".join(part.strip() for part in data.split(b">\n"))
    base = canonical.content_hash(xmlsafe.parse(data))
    assert canonical.content_hash(xmlsafe.parse(data.replace(b"  ", b"    "))) == base
    changed = data.replace(b">1000<", b">999<")
    assert canonical.content_hash(xmlsafe.parse(changed)) != base
    assert compact  # the compact form is only a sanity check of the split above


def test_the_reader_knows_every_root_child_that_holds_elements() -> None:
    # read_document keeps the root's children in canonical._CONTAINERS as elements
    # and reads every other child as text; derive the containers from the schema.
    xs = "{http://www.w3.org/2001/XMLSchema}"
    schema = xmlsafe.parse(canonical.XSD_PATH.read_bytes())
    complex_types = {  # those with elements inside (not a text with attributes)
        t.get("name"): t
        for t in schema.iter(f"{xs}complexType")
        if t.find(f"{xs}simpleContent") is None
    }
    groups = {g.get("name"): g for g in schema.findall(f"{xs}group")}

    def children(particle: object) -> list[object]:
        found = []
        for child in particle:  # type: ignore[attr-defined]
            if child.tag == f"{xs}element":
                found.append(child)
            elif child.tag == f"{xs}group":
                found += children(groups[child.get("ref")])
            elif child.tag in (f"{xs}sequence", f"{xs}choice", f"{xs}complexType"):
                found += children(child)
        return found

    containers = set()
    for root in schema.findall(f"{xs}element"):
        if canonical.q(root.get("name")) not in canonical.ROOTS:
            continue
        for element in children(complex_types[root.get("type")]):
            inline = element.find(f"{xs}complexType") is not None
            if inline or element.get("type") in complex_types:
                containers.add(element.get("name"))
    assert containers == canonical._CONTAINERS
