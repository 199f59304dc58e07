"""The access-control matrix: every endpoint, every kind of caller, both backends.

The world: KE has uploaded its import authorization for morphine from DE, so DE
has it in its inbox. FR is a third country with a valid token. Each case records
the status and one thing a user would notice in the body.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from i2es_hub import store

from .conftest import Tokens, batch_of, bearer, xml_headers

IA_NUMBER = "KE-IA-2026-00042"


@dataclass(frozen=True)
class World:
    document_id: str
    delivery_to_de: str
    ia: bytes


@pytest.fixture
def world(
    client: TestClient,
    engine: Engine,
    country_tokens: Tokens,
    example: dict[str, bytes],
) -> World:
    ia = example["import-authorization"]
    answer = client.post(
        "/v1/documents", content=ia, headers=xml_headers(country_tokens.ke)
    )
    assert answer.status_code == 202, answer.text
    dl = store.deliveries
    with store.read_transaction(engine) as conn:
        delivery = conn.execute(
            select(dl.c.id).where(dl.c.recipient == "DE")
        ).scalar_one()
    return World(answer.json()["document_id"], delivery, ia)


def _error_or(
    marker: Callable[[Any], Any],
) -> Callable[[httpx.Response], tuple[int, Any]]:
    def observe(r: httpx.Response) -> tuple[int, Any]:
        body = r.json()
        if r.status_code >= 400:
            return r.status_code, body["error"]["code"]
        return r.status_code, marker(body)

    return observe


Call = Callable[[TestClient, World, str | None], httpx.Response]


def _submit(c: TestClient, w: World, tok: str | None) -> httpx.Response:
    doc = w.ia.replace(IA_NUMBER.encode(), b"KE-IA-2026-00043")
    return c.post("/v1/documents", content=doc, headers=xml_headers(tok))


def _batch(c: TestClient, w: World, tok: str | None) -> httpx.Response:
    doc = w.ia.replace(IA_NUMBER.encode(), b"KE-IA-2026-00044")
    return c.post("/v1/batches", content=batch_of(doc), headers=xml_headers(tok))


def _validate(c: TestClient, w: World, tok: str | None) -> httpx.Response:
    return c.post("/v1/validate", content=w.ia, headers=xml_headers(tok))


def _inbox(c: TestClient, w: World, tok: str | None) -> httpx.Response:
    return c.get("/v1/inbox", headers=bearer(tok))


def _ack(c: TestClient, w: World, tok: str | None) -> httpx.Response:
    return c.post(f"/v1/inbox/{w.delivery_to_de}/ack", headers=bearer(tok))


def _document(c: TestClient, w: World, tok: str | None) -> httpx.Response:
    return c.get(f"/v1/documents/{w.document_id}", headers=bearer(tok))


def _status(c: TestClient, w: World, tok: str | None) -> httpx.Response:
    return c.get(f"/v1/documents/{w.document_id}/status", headers=bearer(tok))


def _balances(c: TestClient, w: World, tok: str | None) -> httpx.Response:
    # The API has no way to name another country: a stray parameter is ignored.
    return c.get("/v1/balances", params={"country": "DE"}, headers=bearer(tok))


ENDPOINTS: dict[str, tuple[Call, Callable[[httpx.Response], tuple[int, Any]]]] = {
    "POST /v1/documents": (_submit, _error_or(lambda b: b["outcome"])),
    "POST /v1/batches": (_batch, _error_or(lambda b: [r["status"] for r in b])),
    "POST /v1/validate": (_validate, _error_or(lambda b: b["valid"])),
    "GET /v1/inbox": (_inbox, _error_or(lambda b: len(b["messages"]))),
    "POST /v1/inbox/{id}/ack": (_ack, _error_or(lambda b: b["state"])),
    "GET /v1/documents/{id}": (_document, _error_or(lambda b: b["number"])),
    "GET /v1/documents/{id}/status": (
        _status,
        _error_or(lambda b: b["document"]["state"]),
    ),
    "GET /v1/balances": (_balances, _error_or(lambda b: b["country"])),
}

DENIED = (401, "UNAUTHORIZED")

# endpoint -> caller kind -> (token holder, expected observation)
MATRIX: dict[str, dict[str, tuple[str | None, tuple[int, Any]]]] = {
    "POST /v1/documents": {
        "own": ("ke", (202, "accepted")),
        "other": ("de", (403, "FORBIDDEN")),
        "none": (None, DENIED),
        "revoked": ("revoked_ke", DENIED),
    },
    "POST /v1/batches": {
        "own": ("ke", (200, [202])),
        "other": ("de", (200, [403])),
        "none": (None, DENIED),
        "revoked": ("revoked_ke", DENIED),
    },
    "POST /v1/validate": {
        "own": ("ke", (200, True)),
        "other": ("de", (200, False)),
        "none": (None, DENIED),
        "revoked": ("revoked_ke", DENIED),
    },
    "GET /v1/inbox": {
        "own": ("de", (200, 1)),
        "other": ("fr", (200, 0)),
        "none": (None, DENIED),
        "revoked": ("revoked_de", DENIED),
    },
    "POST /v1/inbox/{id}/ack": {
        "own": ("de", (200, "acknowledged")),
        "other": ("fr", (403, "FORBIDDEN")),
        "none": (None, DENIED),
        "revoked": ("revoked_de", DENIED),
    },
    "GET /v1/documents/{id}": {
        "own": ("ke", (200, IA_NUMBER)),
        "recipient": ("de", (200, IA_NUMBER)),
        "other": ("fr", (403, "FORBIDDEN")),
        "none": (None, DENIED),
        "revoked": ("revoked_ke", DENIED),
    },
    "GET /v1/documents/{id}/status": {
        "own": ("ke", (200, "accepted")),
        "recipient": ("de", (200, "accepted")),
        "other": ("fr", (403, "FORBIDDEN")),
        "none": (None, DENIED),
        "revoked": ("revoked_ke", DENIED),
    },
    "GET /v1/balances": {
        "own": ("ke", (200, "KE")),
        "other": ("de", (200, "DE")),
        "none": (None, DENIED),
        "revoked": ("revoked_ke", DENIED),
    },
}

CASES = [
    pytest.param(endpoint, kind, id=f"{endpoint}-{kind}")
    for endpoint, kinds in MATRIX.items()
    for kind in kinds
]


@pytest.mark.parametrize(("endpoint", "kind"), CASES)
def test_access_matrix(
    endpoint: str,
    kind: str,
    client: TestClient,
    world: World,
    country_tokens: Tokens,
) -> None:
    holder, expected = MATRIX[endpoint][kind]
    call, observe = ENDPOINTS[endpoint]
    token = country_tokens.of(holder) if holder else None

    response = call(client, world, token)

    assert observe(response) == expected, response.text


def test_every_route_is_in_the_matrix(client: TestClient) -> None:
    spec = client.get("/v1/openapi.json").json()
    routes = {
        f"{method.upper()} {path}"
        for path, ops in spec["paths"].items()
        for method in ops
    }
    assert routes == set(MATRIX)


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer ", "Basic a2U6cGFzcw==", "Bearer i2es_not-a-token", "bearer"],
)
def test_bad_authorization_headers_get_401_with_what_to_do(
    client: TestClient, world: World, authorization: str
) -> None:
    response = client.get("/v1/inbox", headers={"Authorization": authorization})

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    error = response.json()["error"]
    assert error["where"] == "GET /v1/inbox"
    assert "tokens create" in error["action"]


def test_revoked_token_answer_names_the_token_and_the_fix(
    client: TestClient, world: World, country_tokens: Tokens
) -> None:
    response = client.get("/v1/inbox", headers=bearer(country_tokens.revoked_de))

    error = response.json()["error"]
    assert "revoked" in error["message"]
    assert "--country DE" in error["action"]


def test_recipient_sees_only_its_own_deliveries_in_status(
    client: TestClient, world: World, country_tokens: Tokens, example: dict[str, bytes]
) -> None:
    # The endorsement goes to DE as a document and raises a SHORTFALL alert for DE;
    # FR is no party and sees nothing.
    for name, tok in (
        ("export-authorization", country_tokens.de),
        ("endorsement-shortfall", country_tokens.ke),
    ):
        r = client.post(
            "/v1/documents", content=example[name], headers=xml_headers(tok)
        )
        assert r.status_code == 202, r.text
    endorsement = r.json()["document_id"]

    as_de = client.get(
        f"/v1/documents/{endorsement}/status", headers=bearer(country_tokens.de)
    )
    as_fr = client.get(
        f"/v1/documents/{endorsement}/status", headers=bearer(country_tokens.fr)
    )

    assert {d["recipient"] for d in as_de.json()["deliveries"]} == {"DE"}
    assert as_fr.status_code == 403
