"""End to end: national files -> pull -> store -> push, through real transports."""

from __future__ import annotations

import json

import pytest
from lxml import etree
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from i2es_hub import store
from i2es_hub.exchange import pull, push
from i2es_hub.simulators.national import NationalSystem, sample
from i2es_hub.transports.filedrop import FileDropTransport

KE_NS = "{urn:ke:ppb:epermit:2}"
DE_NS = "{urn:de:bfarm:btm-ah:1}"


def _pull(system: NationalSystem, engine: Engine):
    return pull(system.connector, engine, connection=system.connection)


def _push(system: NationalSystem, engine: Engine):
    return push(system.connector, engine, connection=system.connection)


def _count(engine: Engine, table) -> int:
    with store.read_transaction(engine) as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_kenya_germany_chain_with_shortfall(
    engine: Engine, kenya: NationalSystem, germany: NationalSystem
) -> None:
    kenya.send("KE-IA-2026-00042.xml", sample("ke-ppb", "import-authorization.xml"))
    report = _pull(kenya, engine)
    assert report.outcomes["accepted"] + report.outcomes["held"] == 1
    assert report.archived == 1

    # Germany receives Kenya's import authorization in its own batch format.
    assert _push(germany, engine).delivered == 1
    [(name, data)] = germany.received()
    assert name.startswith("BtM-AH-")
    root = etree.fromstring(data)
    genehmigung = root.find(f"{DE_NS}Genehmigung")
    assert genehmigung.get("art") == "Einfuhr"
    assert genehmigung.get("nummer") == "KE-IA-2026-00042"
    assert genehmigung.findtext(f"{DE_NS}Ausstellungsdatum") == "02.03.2026"
    assert genehmigung.findtext(f"{DE_NS}Position/{DE_NS}Stoff") == "Morphin"

    germany.send("BtM-AH-20260320.xml", sample("de-bfarm", "export-authorizations.xml"))
    report = _pull(germany, engine)
    assert report.documents == 2
    assert "rejected" not in report.outcomes

    # Kenya receives the German export authorization as a PPB e-Permit.
    assert _push(kenya, engine).delivered == 1
    [(_, data)] = kenya.received()
    permit = etree.fromstring(data)
    assert permit.get("kind") == "EXPORT_PERMIT"
    assert permit.findtext(f"{KE_NS}PermitNo") == "DE-EA-2026-7781"
    assert permit.findtext(f"{KE_NS}Items/{KE_NS}Item/{KE_NS}DrugCode") == "MOR"

    kenya.send("KE-EN-2026-00108.xml", sample("ke-ppb", "endorsement-shortfall.xml"))
    report = _pull(kenya, engine)
    [result] = report.results
    assert result.outcome == "accepted"
    assert "SHORTFALL" in {f.code for f in result.findings}

    # The exporter (Germany) gets the endorsement and the SHORTFALL alert.
    assert _push(germany, engine).delivered == 2
    files = [etree.fromstring(d) for _, d in germany.received()]
    kinds = sorted(etree.QName(child).localname for f in files for child in f)
    assert kinds == ["Bestaetigung", "Genehmigung", "Hinweis"]
    alert = next(c for f in files for c in f if c.tag == f"{DE_NS}Hinweis")
    assert alert.findtext(f"{DE_NS}Code") == "SHORTFALL"
    assert alert.findtext(f"{DE_NS}Vorgang") == "KE-EN-2026-00108"
    assert "DE-EA-2026-7781" in alert.findtext(f"{DE_NS}Text")

    # Nothing more is due, and a second push sends nothing again.
    assert _push(germany, engine).due == 0


def test_switzerland_over_rest(
    engine: Engine, switzerland: NationalSystem, germany: NationalSystem
) -> None:
    switzerland.send(
        "CH-IA-2026-0311.json", sample("ch-swissmedic", "import-authorization.json")
    )
    report = _pull(switzerland, engine)
    assert report.documents == 1
    assert "rejected" not in report.outcomes

    germany.send("BtM-AH-20260324.xml", sample("de-bfarm", "export-authorizations.xml"))
    _pull(germany, engine)
    push_report = _push(switzerland, engine)
    assert push_report.delivered == 1
    [(_, body)] = switzerland.received()
    message = json.loads(body)
    assert message["document"]["documentType"] == "EXPORT_PERMIT"
    assert message["document"]["permitNumber"] == "DE-EA-2026-7790"
    assert message["document"]["items"][0]["substance"] == "CODEINUM"

    switzerland.send(
        "CH-EN-2026-0077.json",
        sample("ch-swissmedic", "endorsement-shortfall.json"),
    )
    [result] = _pull(switzerland, engine).results
    assert "SHORTFALL" in {f.code for f in result.findings}
    # Germany was sent the Swiss import authorization, then endorsement and alert.
    assert _push(germany, engine).delivered == 3


def test_archive_only_after_commit(
    engine: Engine, germany: NationalSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    germany.send("BtM-AH-1.xml", sample("de-bfarm", "export-authorizations.xml"))

    def crash(self, files):
        raise RuntimeError("worker killed between commit and archive")

    with monkeypatch.context() as patch:
        patch.setattr(FileDropTransport, "archive", crash)
        with pytest.raises(RuntimeError, match="killed"):
            _pull(germany, engine)
    assert _count(engine, store.documents) == 2
    deliveries = _count(engine, store.deliveries)

    report = _pull(germany, engine)
    assert report.outcomes == {"duplicate": 2}
    assert report.archived == 1
    assert _count(engine, store.documents) == 2
    assert _count(engine, store.deliveries) == deliveries
    assert _pull(germany, engine).files == 0


def test_file_failing_mapping_is_quarantined_with_original(
    engine: Engine, kenya: NationalSystem
) -> None:
    bad = sample("ke-ppb", "import-authorization.xml").replace(
        b"<DrugCode>MOR</DrugCode>", b"<DrugCode>XYZ</DrugCode>"
    )
    kenya.send("KE-IA-bad.xml", bad)
    report = _pull(kenya, engine)
    assert report.mapping_failed == 1
    [result] = report.results
    assert result.outcome == "rejected"
    [finding] = result.findings
    assert finding.code == "MAPPING_FAILED"
    assert "KE-IA-bad.xml" in finding.message
    assert "'XYZ'" in finding.message
    assert "substances.csv" in finding.message
    with store.read_transaction(engine) as conn:
        row = conn.execute(select(store.quarantine)).mappings().one()
    assert row["original"] == bad
    assert row["source"] == "KE-IA-bad.xml"
    assert report.archived == 1


def test_file_invalid_against_national_schema(
    engine: Engine, kenya: NationalSystem
) -> None:
    bad = sample("ke-ppb", "import-authorization.xml").replace(
        b"<DateIssued>2026-03-02</DateIssued>", b"<DateIssued>2 March</DateIssued>"
    )
    kenya.send("KE-IA-date.xml", bad)
    [result] = _pull(kenya, engine).results
    [finding] = result.findings
    assert finding.code == "SCHEMA_INVALID"
    assert "KE-IA-date.xml, line 5" in finding.message
    assert "ke-ppb-epermit-2.xsd" in finding.message


def test_connector_ingests_only_as_its_own_country(
    engine: Engine, kenya: NationalSystem
) -> None:
    # A German document in PPB format, dropped on Kenya's server.
    forged = sample("ke-ppb", "import-authorization.xml").replace(
        b'<Issuer country="KEN">', b'<Issuer country="DEU">'
    )
    kenya.send("forged.xml", forged)
    [result] = _pull(kenya, engine).results
    assert result.outcome == "rejected"
    assert "SENDER_NOT_ISSUER" in {f.code for f in result.findings}
