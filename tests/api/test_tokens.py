"""Tokens through the real CLI: shown once, stored hashed, revocable, never logged."""

from __future__ import annotations

import hashlib
import json
import logging

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from i2es_hub import store, tokens

from .conftest import bearer, xml_headers


def test_create_prints_the_token_last_and_stores_only_its_hash(
    hub, engine: Engine
) -> None:
    out = hub(
        "tokens",
        "create",
        "--country",
        "ke",
        "--label",
        "KE national system",
        check=True,
    )

    token = out.stdout.split()[-1]
    assert token.startswith("i2es_")
    assert len(token) > 40
    t = store.api_tokens
    with store.read_transaction(engine) as conn:
        row = conn.execute(select(t)).one()
    assert row.country == "KE"
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(tuple(row))


def test_list_never_shows_tokens_and_revoke_locks_them_out(
    hub, engine: Engine, client: TestClient
) -> None:
    token = hub("tokens", "create", "--country", "DE", check=True).stdout.split()[-1]
    token_id = hub("tokens", "list", "--json", check=True).stdout
    assert token not in token_id
    [info] = json.loads(token_id)
    assert client.get("/v1/inbox", headers=bearer(token)).status_code == 200

    revoked = hub("tokens", "revoke", info["id"], check=True)
    listed = hub("tokens", "list", check=True)

    assert "revoked" in revoked.stdout
    assert "revoked" in listed.stdout
    assert token not in listed.stdout
    assert client.get("/v1/inbox", headers=bearer(token)).status_code == 401


def test_bad_country_and_unknown_id_give_one_clear_line(hub) -> None:
    bad = hub("tokens", "create", "--country", "Kenya")
    unknown = hub("tokens", "revoke", "nope")

    assert bad.returncode != 0
    assert "ISO 3166-1 alpha-2" in bad.stderr
    assert unknown.returncode != 0
    assert "tokens list" in unknown.stderr


def test_new_token_repr_hides_the_token(engine: Engine) -> None:
    with store.write_transaction(engine) as conn:
        new = tokens.create(conn, "FR")

    assert str(new.token) not in repr(new)
    assert "***" in repr(new)


def test_tokens_never_reach_the_logs(
    client: TestClient,
    engine: Engine,
    example: dict[str, bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with store.write_transaction(engine) as conn:
        ke = str(tokens.create(conn, "KE").token)
        de = tokens.create(conn, "DE")
        tokens.revoke(conn, de.info.id)
    caplog.set_level(logging.DEBUG)

    client.post(
        "/v1/documents",
        content=example["import-authorization"],
        headers=xml_headers(ke),
    )
    client.get("/v1/inbox", headers=bearer(str(de.token)))
    client.get("/v1/inbox", headers=bearer(ke + "x"))

    assert caplog.records, "expected the API to log its work"
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert ke not in text
    assert str(de.token) not in text
    assert ke[5:20] not in text
