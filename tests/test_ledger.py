"""The estimate ledger, against numbers computed by hand (docs/estimates.md).

The documents use the base form (factor 1), so grams stated are grams of base.
"""

from __future__ import annotations

import pytest

from i2es_hub import ledger, store
from i2es_hub.ingest import Pipeline, Submission
from i2es_hub.policy import Policy
from tests.conftest import set_estimates
from tests.helpers import add, change, edit
from tests.test_ingest import codes, one

HEADER = "country,substance,year,kind,grams,confirmed_on\n"


def ia(example, grams, number="KE-IA-2026-00042", **more):
    return edit(
        example["import-authorization"],
        **{
            "c:DocumentNumber": number,
            "c:Lines/c:Line/c:Form": "morphine",
            "c:Lines/c:Line/c:Quantity": str(grams),
            **more,
        },
    )


def ea(example, grams, number="DE-EA-2026-7781", **more):
    return edit(
        example["export-authorization"],
        **{
            "c:DocumentNumber": number,
            "c:Lines/c:Line/c:Form": "morphine",
            "c:Lines/c:Line/c:Quantity": str(grams),
            **more,
        },
    )


def en(
    example,
    grams,
    number="KE-EN-2026-00107",
    ea_number="DE-EA-2026-7781",
    received="2026-04-27",
):
    return edit(
        example["endorsement"],
        **{
            "c:DocumentNumber": number,
            "c:Lines/c:Line/c:Form": "morphine",
            "c:Lines/c:Line/c:QuantityReceived": str(grams),
            "c:ExportAuthorizationRef/c:Number": ea_number,
            "c:ReceiptDate": received,
        },
    )


def cancel(number, doc_type, issuer, target, cancel_number="CX-1"):
    return f"""<Cancellation xmlns="urn:i2es-hub:canonical:1">
  <DocumentNumber>{cancel_number}</DocumentNumber><IssuingCountry>{issuer}</IssuingCountry>
  <IssuingAuthority>Authority</IssuingAuthority><IssueDate>2026-05-01</IssueDate>
  <Cancels><Type>{doc_type}</Type><Number>{target}</Number>
  <IssuingCountry>{issuer}</IssuingCountry></Cancels><Reason>not needed</Reason>
</Cancellation>""".encode()


def balance(engine, year=2026, substance="morphine", country="KE"):
    with engine.connect() as conn:
        rows = ledger.balances(conn, country, substance, year)
    assert len(rows) == 1, rows
    row = rows[0]
    return row["figure"], row["reserved"], row["consumed"], row["available"]


def estimate(engine, grams, confirmed="2025-11-01", year=2026, substance="morphine"):
    set_estimates(
        engine, HEADER + f"KE,{substance},{year},estimate,{grams},{confirmed}\n"
    )


def test_import_over_the_estimate_is_flagged_with_the_figures(engine, example):
    estimate(engine, 500)
    r = one(engine, ia(example, 1000), "KE")
    assert r.outcome == "accepted" and codes(r) == {"EXCESS_ESTIMATE"}
    message = r.findings[0].message
    for part in (
        "1000.000 g base",
        "estimate 500",
        "reserved 0",
        "consumed 0",
        "available 500",
        "excess 500",
    ):
        assert part in message, message
    assert balance(engine) == (500, 1000, 0, -500)  # warnings do not stop the effect


def test_supplementary_estimate_replaces_the_earlier_figure(engine, example):
    estimate(engine, 500, "2025-11-01")
    one(engine, ia(example, 752), "KE")
    estimate(engine, 2000, "2026-06-01")
    assert balance(engine) == (2000, 752, 0, 1248)
    # an older confirmation loaded late does not win
    estimate(engine, 100, "2026-01-15")
    assert balance(engine)[0] == 2000


def test_no_estimate_on_file(engine, example):
    r = one(engine, ia(example, 10), "KE")
    assert codes(r) == {"NO_ESTIMATE"}
    assert "KE has no estimate on file for morphine in 2026" in r.findings[0].message


def test_exports_draw_on_the_import_then_reserve_anew(engine, example):
    estimate(engine, 1100)
    one(engine, ia(example, 1000, **{"c:MultipleConsignments": "true"}), "KE")
    assert balance(engine) == (1100, 1000, 0, 100)
    first = one(engine, ea(example, 600), "DE")
    assert codes(first) == set()  # drawn entirely from the import authorization
    assert balance(engine) == (1100, 1000, 0, 100)
    second = one(engine, ea(example, 600, "DE-EA-2026-7782"), "DE")
    # 400 g left under the import authorization; 200 g is new demand, over 100
    assert codes(second) == {"IMPORT_AUTHORIZATION_EXHAUSTED", "EXCESS_ESTIMATE"}
    assert second.deliveries == ["DE", "KE"]  # the exporter is alerted at once
    assert balance(engine) == (1100, 1200, 0, -100)

    # the first export arrives short: release its 600, consume 550
    r = one(engine, en(example, 550), "KE")
    assert codes(r) == {"SHORTFALL"}
    assert balance(engine) == (1100, 600, 550, -50)

    # cancelling the second export gives 400 back to the import, releases 200
    one(engine, cancel("x", "export-authorization", "DE", "DE-EA-2026-7782"), "DE")
    assert balance(engine) == (1100, 400, 550, 150)
    # cancelling the import releases what it still reserves
    one(
        engine,
        cancel("x", "import-authorization", "KE", "KE-IA-2026-00042", "CX-2"),
        "KE",
    )
    assert balance(engine) == (1100, 0, 550, 550)


def test_receipt_in_the_next_year_consumes_there(engine, example):
    estimate(engine, 5000)
    estimate(engine, 5000, year=2027)
    one(engine, ia(example, 1000), "KE")
    one(engine, ea(example, 1000), "DE")
    one(engine, en(example, 1000, received="2027-01-05"), "KE")
    assert balance(engine, 2026) == (5000, 0, 0, 5000)
    assert balance(engine, 2027) == (5000, 0, 1000, 4000)


def test_import_after_its_exports_ends_as_if_it_came_first(engine, example):
    estimate(engine, 5000)
    early = one(engine, ea(example, 600), "DE")
    assert codes(early) == {"IMPORT_AUTHORIZATION_NOT_FOUND"}
    assert balance(engine) == (5000, 600, 0, 4400)  # reserved anew until linked
    one(engine, ia(example, 1000), "KE")
    assert balance(engine) == (5000, 1000, 0, 4000)
    # and the link holds: an endorsement releases the drawn part
    one(engine, en(example, 600), "KE")
    assert balance(engine) == (5000, 400, 600, 4000)


def test_both_orders_in_one_batch_give_the_same_balance(engine, example):
    estimate(engine, 5000)
    results = list(
        Pipeline(engine).ingest(
            [
                Submission(ea(example, 600), "DE", "test"),
                Submission(ia(example, 1000), "KE", "test"),
            ]
        )
    )
    assert [r.outcome for r in results] == ["accepted", "accepted"]
    assert balance(engine) == (5000, 1000, 0, 4000)


def test_emergency_export_does_not_touch_the_ledger(engine, example):
    estimate(engine, 10)

    def emergency(root):
        root.remove(root.find("{*}ImportAuthorizationRef"))
        add(root, "Emergency", "true")

    r = one(engine, change(ea(example, 900), emergency), "DE")
    assert codes(r) == {"EMERGENCY_EXPORT"}
    assert balance(engine) == (10, 0, 0, 10)


def test_amendment_replaces_the_effect_and_only_an_increase_is_checked(engine, example):
    estimate(engine, 1100)
    one(engine, ia(example, 1000), "KE")
    up = one(engine, ia(example, 1200), "KE")
    assert codes(up) == {"AMENDED", "EXCESS_ESTIMATE"}
    assert "200.000 g base exceeds" in next(
        f.message for f in up.findings if f.code == "EXCESS_ESTIMATE"
    )
    assert balance(engine) == (1100, 1200, 0, -100)
    # a decrease is no new demand, but the balance it starts from is exceeded
    down = one(engine, ia(example, 800), "KE")
    assert codes(down) == {"AMENDED", "EXCESS_ESTIMATE"}
    assert balance(engine) == (1100, 800, 0, 300)
    lower = one(engine, ia(example, 700), "KE")
    assert codes(lower) == {"AMENDED"}
    assert balance(engine) == (1100, 700, 0, 400)


def test_export_drawing_on_an_import_beyond_the_balance_is_flagged(engine, example):
    estimate(engine, 500)
    one(engine, ia(example, 1000), "KE")  # 500 g beyond the estimate
    r = one(engine, ea(example, 600), "DE")  # no new demand: drawn from the import
    assert codes(r) == {"EXCESS_ESTIMATE"}
    assert "0.000 g base exceeds" in r.findings[0].message
    assert "available -500" in r.findings[0].message
    assert r.deliveries == ["DE", "KE"]  # the exporter sees it at once
    assert balance(engine) == (500, 1000, 0, -500)


def test_export_amendment_redraws_from_its_import(engine, example):
    estimate(engine, 5000)
    one(engine, ia(example, 1000), "KE")
    one(engine, ea(example, 600), "DE")
    one(engine, ea(example, 1100), "DE")  # 1000 drawn, 100 anew
    assert balance(engine) == (5000, 1100, 0, 3900)


def test_assessment_stays_in_force_until_changed(engine, example):
    set_estimates(engine, HEADER + "KE,midazolam,2024,assessment,300,2023-11-01\n")
    data = ia(
        example,
        400,
        **{
            "c:Lines/c:Line/c:Substance": "midazolam",
            "c:Lines/c:Line/c:Form": "midazolam",
            "c:Lines/c:Line/c:Convention": "1971",
            "c:Lines/c:Line/c:Schedule": "IV",
        },
    )
    r = one(engine, data, "KE")
    assert codes(r) == {"EXCESS_ASSESSMENT"}
    assert "KE's 2026 assessment: assessment 300" in r.findings[0].message
    assert balance(engine, substance="midazolam") == (300, 400, 0, -100)


def test_held_document_has_no_effect_until_released(engine, example):
    estimate(engine, 500)
    pipeline = Pipeline(
        engine, policy=Policy(hold={"KE": frozenset({"EXCESS_ESTIMATE"})})
    )
    [r] = pipeline.ingest([Submission(ia(example, 1000), "KE", "test")])
    assert r.outcome == "held" and r.deliveries == []
    assert r.findings[0].severity == "hold"
    assert balance(engine) == (500, 0, 0, 500)


def test_prohibited_import_is_rejected_unless_licensed(engine, example):
    from i2es_hub.estimates import load_prohibitions, parse_prohibitions

    estimate(engine, 5000)
    with store.write_transaction(engine) as conn:
        load_prohibitions(
            conn,
            parse_prohibitions(
                "country,substance,since\nKE,morphine,2025-01-01\n", "test"
            ),
        )
    r = one(engine, ia(example, 10), "KE")
    assert r.outcome == "rejected" and codes(r) == {"IMPORT_PROHIBITED"}
    licensed = change(
        ia(example, 10),
        lambda root: add(root, "SpecialImportLicence", "KE-SIL-7", before="Remarks"),
    )
    assert one(engine, licensed, "KE").outcome == "accepted"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("KE,morphine,2026,estimate,-5,2026-01-01", "line 2: grams '-5'"),
        ("KE,morphine,20x6,estimate,5,2026-01-01", "line 2: year '20x6'"),
        ("Kenya,morphine,2026,estimate,5,2026-01-01", "line 2: country 'Kenya'"),
        ("KE,morphine,2026,guess,5,2026-01-01", "line 2: kind 'guess'"),
        ("KE,morphine,2026,estimate,5,2026-13-01", "line 2: confirmed_on"),
    ],
)
def test_malformed_estimate_rows_name_the_line_and_load_nothing(line, expected):
    from i2es_hub.errors import ConfigError
    from i2es_hub.estimates import parse_estimates

    with pytest.raises(ConfigError, match=expected):
        parse_estimates(HEADER + line + "\n", "est.csv")
