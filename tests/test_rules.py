"""One case per treaty rule: the input, the findings expected, on a real database."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from i2es_hub import store
from tests.conftest import GENEROUS_ESTIMATES, set_estimates
from tests.helpers import add, change, edit
from tests.test_ingest import codes, one


@pytest.fixture(autouse=True)
def generous_estimates(engine):
    """Estimates large enough that the balance check stays out of these tests."""
    set_estimates(engine, GENEROUS_ESTIMATES)


def _ia(example, **changes):
    return edit(example["import-authorization"], **changes)


def _ea(example, **changes):
    return edit(example["export-authorization"], **changes)


def test_blank_importer_name_is_a_missing_treaty_field(engine, example):
    r = one(engine, _ia(example, **{"c:Importer/c:Name": ""}), "KE")
    assert r.outcome == "rejected" and codes(r) == {"MISSING_TREATY_FIELD"}
    assert "importer name is empty" in r.findings[0].message


def test_blank_exporter_address_is_a_missing_treaty_field(engine, example):
    r = one(engine, _ia(example, **{"c:Exporter/c:Address/c:Street": " "}), "KE")
    assert codes(r) == {"MISSING_TREATY_FIELD"}
    assert "exporter address" in r.findings[0].message


def test_validity_ending_before_it_starts_is_an_invalid_period(engine, example):
    r = one(engine, _ia(example, **{"c:Validity/c:Until": "2026-03-01"}), "KE")
    assert r.outcome == "rejected" and codes(r) == {"INVALID_PERIOD"}
    assert "2026-03-01 before it starts 2026-03-02" in r.findings[0].message


def test_issue_after_validity_is_an_invalid_period(engine, example):
    r = one(engine, _ia(example, **{"c:IssueDate": "2026-09-02"}), "KE")
    assert codes(r) == {"INVALID_PERIOD"}
    assert "after its own validity ended 2026-09-01" in r.findings[0].message


def test_unknown_salt_form_is_rejected(engine, example):
    r = one(
        engine, _ia(example, **{"c:Lines/c:Line/c:Form": "morphine tartrate"}), "KE"
    )
    assert r.outcome == "rejected" and codes(r) == {"UNKNOWN_SUBSTANCE"}
    assert "form 'morphine tartrate' of morphine" in r.findings[0].message


def test_post_office_box_consignee_is_rejected(engine, example):
    r = one(
        engine,
        _ia(example, **{"c:Importer/c:Address/c:Street": "P.O. Box 30016"}),
        "KE",
    )
    assert r.outcome == "rejected" and codes(r) == {"POST_BOX_CONSIGNEE"}
    assert "31(9)" in r.findings[0].message


def test_schedule_one_psychotropic_to_a_bonded_warehouse_is_rejected(engine, example):
    data = _ia(
        example,
        **{
            "c:Lines/c:Line/c:Substance": "psilocybine",
            "c:Lines/c:Line/c:Form": "psilocybine",
            "c:Lines/c:Line/c:Convention": "1971",
            "c:BondedWarehouse": "true",
        },
    )
    r = one(engine, data, "KE")
    assert r.outcome == "rejected" and codes(r) == {"BONDED_WAREHOUSE_FORBIDDEN"}


def test_preparation_in_units_converts_to_grams_of_base(engine, example):
    def tablets(root):
        line = root.find(".//{*}Line")
        qty = line.find("{*}Quantity")
        qty.text, qty.attrib["unit"] = "10000", "unit"
        add(line, "StrengthPerUnit", "10").set("unit", "mg")
        add(
            line, "PreparationName", "Morphine sulfate 10 mg tablets", before="Quantity"
        )

    r = one(engine, change(example["import-authorization"], tablets), "KE")
    assert r.outcome == "accepted", r.findings
    with engine.connect() as conn:
        grams = conn.execute(select(store.document_lines.c.base_grams)).scalar_one()
    # 10,000 tablets x 10 mg = 100 g of the pentahydrate x 0.752 = 75.2 g base
    assert Decimal(grams) == Decimal("75.200")


@pytest.mark.parametrize(
    ("change_", "expected"),
    [
        (
            {"c:ImportAuthorizationRef/c:IssuingAuthority": "Ministry of Health"},
            "authority 'Ministry of Health' vs 'Pharmacy and Poisons Board'",
        ),
        (
            {"c:ImportAuthorizationRef/c:IssueDate": "2026-03-03"},
            "issue date 2026-03-03 vs 2026-03-02",
        ),
        (
            {"c:Importer/c:Name": "Another Importer Ltd"},
            "importer 'Another Importer Ltd' vs 'Kenya Medical Supplies Authority'",
        ),
        (
            {
                "c:Lines/c:Line/c:Substance": "codeine",
                "c:Lines/c:Line/c:Form": "codeine phosphate hemihydrate",
                "c:Lines/c:Line/c:Schedule": "II",
            },
            "substance 'codeine' is not on the import authorization",
        ),
    ],
    ids=["authority", "date", "importer", "substance"],
)
def test_export_authorization_differing_from_its_import_authorization_is_rejected(
    engine, example, change_, expected
):
    one(engine, example["import-authorization"], "KE")
    r = one(engine, _ea(example, **change_), "DE")
    assert r.outcome == "rejected" and codes(r) == {"IMPORT_AUTHORIZATION_MISMATCH"}
    assert expected in r.findings[0].message


def test_exports_beyond_the_import_authorization_are_flagged_exhausted(engine, example):
    one(engine, _ia(example, **{"c:MultipleConsignments": "true"}), "KE")
    first = one(engine, _ea(example, **{"c:Lines/c:Line/c:Quantity": "600"}), "DE")
    assert first.outcome == "accepted" and codes(first) == set()
    second = one(
        engine,
        _ea(
            example,
            **{
                "c:DocumentNumber": "DE-EA-2026-7782",
                "c:Lines/c:Line/c:Quantity": "500",
            },
        ),
        "DE",
    )
    assert second.outcome == "accepted"
    assert codes(second) == {"IMPORT_AUTHORIZATION_EXHAUSTED"}
    # 600 g and 500 g of the salt: 451.2 + 376 = 827.2 g base against 752 g
    assert (
        "376.000 g base with 451.200 g already exported" in second.findings[0].message
    )
    assert "by 75.200 g" in second.findings[0].message


def test_amending_an_export_does_not_count_its_own_earlier_draw(engine, example):
    one(engine, example["import-authorization"], "KE")
    one(engine, _ea(example, **{"c:Lines/c:Line/c:Quantity": "900"}), "DE")
    r = one(engine, example["export-authorization"], "DE")  # 900 -> 1000 g
    assert r.outcome == "amended" and codes(r) == {"AMENDED"}


def test_export_valid_beyond_the_import_authorization_is_outside_validity(
    engine, example
):
    one(engine, example["import-authorization"], "KE")
    r = one(engine, _ea(example, **{"c:Validity/c:Until": "2026-10-01"}), "DE")
    assert r.outcome == "accepted" and codes(r) == {"OUTSIDE_VALIDITY"}


def test_emergency_export_skips_the_import_authorization_check(engine, example):
    def emergency(root):
        ref = root.find("{*}ImportAuthorizationRef")
        root.remove(ref)
        add(root, "Emergency", "true")

    r = one(engine, change(example["export-authorization"], emergency), "DE")
    assert r.outcome == "accepted" and codes(r) == {"EMERGENCY_EXPORT"}


def test_endorsement_above_the_authorized_quantity_is_an_excess_receipt(
    engine, example
):
    one(engine, example["import-authorization"], "KE")
    one(engine, example["export-authorization"], "DE")
    r = one(
        engine,
        edit(example["endorsement"], **{"c:Lines/c:Line/c:QuantityReceived": "1100"}),
        "KE",
    )
    assert codes(r) == {"EXCESS_RECEIPT"} and r.deliveries == ["DE"]


def test_full_receipt_raises_no_alert(engine, example):
    one(engine, example["import-authorization"], "KE")
    one(engine, example["export-authorization"], "DE")
    r = one(engine, example["endorsement"], "KE")
    assert r.outcome == "accepted" and codes(r) == set()


def test_endorsement_of_an_unknown_export_authorization_is_flagged(engine, example):
    r = one(engine, example["endorsement"], "KE")
    assert r.outcome == "accepted" and codes(r) == {"EXPORT_AUTHORIZATION_NOT_FOUND"}
