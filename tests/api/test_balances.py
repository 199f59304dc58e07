"""Balances: the caller's own estimate ledger, in grams of anhydrous base."""

from __future__ import annotations

from decimal import Decimal

from fastapi.testclient import TestClient

from .conftest import Tokens, bearer, xml_headers


def test_import_authorization_reserves_on_the_importers_balance(
    client: TestClient, country_tokens: Tokens, example: dict[str, bytes]
) -> None:
    r = client.post(
        "/v1/documents",
        content=example["import-authorization"],
        headers=xml_headers(country_tokens.ke),
    )
    assert r.status_code == 202

    ke = client.get("/v1/balances", headers=bearer(country_tokens.ke)).json()
    year = client.get(
        "/v1/balances",
        params={"substance": "Morphine", "year": 2026},
        headers=bearer(country_tokens.ke),
    ).json()
    other_substance = client.get(
        "/v1/balances",
        params={"substance": "codeine"},
        headers=bearer(country_tokens.ke),
    ).json()
    de = client.get("/v1/balances", headers=bearer(country_tokens.de)).json()

    [row] = ke["balances"]
    assert (row["country"], row["substance"], row["year"]) == ("KE", "morphine", 2026)
    # 1000 g morphine sulfate pentahydrate x 0.752 = 752 g morphine base
    assert Decimal(str(row["reserved"])) == Decimal("752")
    assert year["balances"] == ke["balances"]
    assert other_substance["balances"] == []
    assert de == {"country": "DE", "balances": []}


def test_regression_nul_byte_in_a_parameter_is_422_not_a_database_error(
    client: TestClient, country_tokens: Tokens
) -> None:
    # Found by schemathesis: PostgreSQL refuses NUL in text and the hub answered 500.
    balances = client.get(
        "/v1/balances", params={"substance": "\x00"}, headers=bearer(country_tokens.ke)
    )
    document = client.get("/v1/documents/%00", headers=bearer(country_tokens.ke))
    ack = client.post("/v1/inbox/%00/ack", headers=bearer(country_tokens.ke))

    assert [balances.status_code, document.status_code, ack.status_code] == [422] * 3
    assert "query.substance" in balances.json()["error"]["message"]
