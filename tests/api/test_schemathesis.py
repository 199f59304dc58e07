"""Schemathesis against the published OpenAPI document: no 5xx, whatever is sent.

Every operation gets generated requests (valid and invalid parameters, headers and
bodies, from schemathesis' positive and negative modes), authenticated as KE on a
database that holds the example chain, so the routes run past authentication into
the pipeline and the outbox. Bounded to 25 examples per mode and operation.
"""

from __future__ import annotations

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import Tokens, bearer, xml_headers

OPERATIONS = [
    ("POST", "/v1/documents"),
    ("POST", "/v1/batches"),
    ("POST", "/v1/validate"),
    ("GET", "/v1/inbox"),
    ("POST", "/v1/inbox/{id}/ack"),
    ("GET", "/v1/documents/{id}"),
    ("GET", "/v1/documents/{id}/status"),
    ("GET", "/v1/balances"),
]


@pytest.fixture
def api_schema(
    app: FastAPI, client: TestClient, country_tokens: Tokens, example: dict[str, bytes]
) -> schemathesis.BaseSchema:
    for name, tok in (
        ("import-authorization", country_tokens.ke),
        ("export-authorization", country_tokens.de),
        ("endorsement-shortfall", country_tokens.ke),
    ):
        r = client.post(
            "/v1/documents", content=example[name], headers=xml_headers(tok)
        )
        assert r.status_code == 202, r.text
    return schemathesis.openapi.from_asgi("/v1/openapi.json", app)


def test_the_list_covers_every_operation(api_schema: schemathesis.BaseSchema) -> None:
    published = {
        (result.ok().method.upper(), result.ok().path)
        for result in api_schema.get_all_operations()
    }
    assert published == set(OPERATIONS)


@pytest.mark.parametrize(
    ("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS]
)
def test_no_server_error_for_any_generated_request(
    method: str, path: str, api_schema: schemathesis.BaseSchema, country_tokens: Tokens
) -> None:
    operation = api_schema[path][method]
    cases = st.one_of(
        operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
        operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
    )
    seen: list[int] = []

    @settings(
        max_examples=50,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def check(case: schemathesis.Case) -> None:
        response = case.call(headers=bearer(country_tokens.ke))
        seen.append(response.status_code)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path}: {response.text[:500]}"
        )
        if response.status_code >= 400:
            error = response.json()["error"]
            assert error["message"]
            assert error["where"]
            assert error["action"]

    check()

    # The token let the requests through to the routes themselves.
    assert seen
    assert any(status != 401 for status in seen), seen
