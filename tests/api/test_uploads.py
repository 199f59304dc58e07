"""Uploads: single documents, Idempotency-Key, batches, validation, safe intake."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from i2es_hub import store, xmlsafe

from .conftest import Tokens, batch_of, bearer, renumber, xml_headers


def _count(engine: Engine, table: str) -> int:
    with store.read_transaction(engine) as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(store.metadata.tables[table])
            ).scalar_one()
        )


def test_upload_answers_202_with_message_id_outcome_and_findings_after_storing(
    client: TestClient,
    engine: Engine,
    country_tokens: Tokens,
    example: dict[str, bytes],
) -> None:
    r = client.post(
        "/v1/documents",
        content=example["import-authorization"],
        headers=xml_headers(country_tokens.ke),
    )

    assert r.status_code == 202
    body = r.json()
    assert body["outcome"] == "accepted"
    assert body["document"] == {
        "type": "import-authorization",
        "number": "KE-IA-2026-00042",
        "issuer": "KE",
    }
    assert body["deliveries"] == ["DE"]
    assert isinstance(body["findings"], list)
    v = store.document_versions
    with store.read_transaction(engine) as conn:
        stored = conn.execute(select(v.c.message_id, v.c.channel)).one()
    assert tuple(stored) == (body["message_id"], "api")


def test_same_idempotency_key_and_body_gives_the_first_answer_and_no_second_effect(
    client: TestClient,
    engine: Engine,
    country_tokens: Tokens,
    example: dict[str, bytes],
) -> None:
    headers = xml_headers(country_tokens.ke, **{"Idempotency-Key": "ke-upload-0042"})
    ia = example["import-authorization"]

    first = client.post("/v1/documents", content=ia, headers=headers)
    again = client.post("/v1/documents", content=ia, headers=headers)

    assert first.status_code == again.status_code == 202
    assert again.json()["message_id"] == first.json()["message_id"]
    assert again.json()["outcome"] == "accepted"
    assert again.json()["deliveries"] == first.json()["deliveries"]
    assert _count(engine, "document_versions") == 1
    assert _count(engine, "deliveries") == 1


def test_same_idempotency_key_with_another_body_is_409(
    client: TestClient,
    engine: Engine,
    country_tokens: Tokens,
    example: dict[str, bytes],
) -> None:
    headers = xml_headers(country_tokens.ke, **{"Idempotency-Key": "k-1"})
    ia = example["import-authorization"]
    client.post("/v1/documents", content=ia, headers=headers)

    other = client.post(
        "/v1/documents", content=renumber(ia, "KE-IA-2026-00099"), headers=headers
    )

    assert other.status_code == 409
    assert other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert "new Idempotency-Key" in other.json()["error"]["action"]
    assert _count(engine, "documents") == 1


def test_idempotency_keys_are_per_country(
    client: TestClient, country_tokens: Tokens, example: dict[str, bytes]
) -> None:
    key = {"Idempotency-Key": "shared-key"}
    ke = client.post(
        "/v1/documents",
        content=example["import-authorization"],
        headers=xml_headers(country_tokens.ke, **key),
    )
    de = client.post(
        "/v1/documents",
        content=example["export-authorization"],
        headers=xml_headers(country_tokens.de, **key),
    )

    assert (ke.status_code, de.status_code) == (202, 202)
    assert ke.json()["message_id"] != de.json()["message_id"]


def test_a_rejected_upload_replays_its_rejection_under_the_same_key(
    client: TestClient,
    engine: Engine,
    country_tokens: Tokens,
    example: dict[str, bytes],
) -> None:
    headers = xml_headers(country_tokens.de, **{"Idempotency-Key": "de-wrong"})
    first = client.post(
        "/v1/documents", content=example["import-authorization"], headers=headers
    )
    again = client.post(
        "/v1/documents", content=example["import-authorization"], headers=headers
    )

    assert first.status_code == again.status_code == 403
    assert (
        again.json()["result"]["quarantine_id"]
        == first.json()["result"]["quarantine_id"]
    )
    assert _count(engine, "quarantine") == 1


def test_document_of_another_country_is_403_and_quarantined(
    client: TestClient,
    engine: Engine,
    country_tokens: Tokens,
    example: dict[str, bytes],
) -> None:
    r = client.post(
        "/v1/documents",
        content=example["import-authorization"],
        headers=xml_headers(country_tokens.de),
    )

    assert r.status_code == 403
    error = r.json()["error"]
    assert "issued by KE" in error["message"]
    assert "DE may submit only" in error["message"]
    q = store.quarantine
    with store.read_transaction(engine) as conn:
        row = conn.execute(select(q.c.id, q.c.sender, q.c.channel)).one()
    assert tuple(row) == (r.json()["result"]["quarantine_id"], "DE", "api")
    assert _count(engine, "documents") == 0


def test_doctype_is_refused_like_every_other_channel(
    client: TestClient, engine: Engine, country_tokens: Tokens
) -> None:
    evil = (
        b'<?xml version="1.0"?>\n'
        b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n'
        b'<ImportAuthorization xmlns="urn:i2es-hub:canonical:1">&e;'
        b"</ImportAuthorization>"
    )

    r = client.post(
        "/v1/documents", content=evil, headers=xml_headers(country_tokens.ke)
    )

    assert r.status_code == 422
    assert r.json()["result"]["findings"][0]["code"] == "UNSAFE_XML"
    assert "root:" not in r.text
    assert _count(engine, "quarantine") == 1


def test_malformed_xml_is_422_with_the_line(
    client: TestClient, country_tokens: Tokens
) -> None:
    r = client.post(
        "/v1/documents",
        content=b"<a>\n<b>\n</a>",
        headers=xml_headers(country_tokens.ke),
    )

    assert r.status_code == 422
    finding = r.json()["result"]["findings"][0]
    assert finding["code"] == "SCHEMA_INVALID"
    assert "not well-formed" in finding["message"]


def test_body_over_the_limit_is_413_and_nothing_is_stored(
    client: TestClient, engine: Engine, country_tokens: Tokens
) -> None:
    big = b"<x>" + b" " * (xmlsafe.MAX_DOCUMENT_BYTES + 1) + b"</x>"

    r = client.post(
        "/v1/documents", content=big, headers=xml_headers(country_tokens.ke)
    )

    assert r.status_code == 413
    assert "POST /v1/batches" in r.json()["error"]["action"]
    assert _count(engine, "quarantine") == 0


def test_body_over_the_limit_without_content_length_is_413(
    client: TestClient, country_tokens: Tokens
) -> None:
    def chunks():
        for _ in range(xmlsafe.MAX_DOCUMENT_BYTES // 65536 + 2):
            yield b" " * 65536

    r = client.post(
        "/v1/documents", content=chunks(), headers=xml_headers(country_tokens.ke)
    )

    assert r.status_code == 413


def test_json_body_is_415_and_empty_body_is_400(
    client: TestClient, country_tokens: Tokens
) -> None:
    as_json = client.post(
        "/v1/documents", json={"a": 1}, headers=bearer(country_tokens.ke)
    )
    empty = client.post(
        "/v1/documents", content=b"", headers=xml_headers(country_tokens.ke)
    )

    assert as_json.status_code == 415
    assert "application/xml" in as_json.json()["error"]["action"]
    assert empty.status_code == 400


def test_a_batch_on_the_single_document_endpoint_is_refused(
    client: TestClient,
    engine: Engine,
    country_tokens: Tokens,
    example: dict[str, bytes],
) -> None:
    ia = example["import-authorization"]
    body = batch_of(ia, renumber(ia, "KE-IA-2026-00050"))

    r = client.post(
        "/v1/documents", content=body, headers=xml_headers(country_tokens.ke)
    )

    assert r.status_code == 422
    assert r.json()["error"]["code"] == "NOT_ONE_DOCUMENT"


def test_batch_gives_one_result_per_document_in_order_as_a_json_list(
    client: TestClient,
    engine: Engine,
    country_tokens: Tokens,
    example: dict[str, bytes],
) -> None:
    ia = example["import-authorization"]
    docs = [renumber(ia, f"KE-IA-B-{i:03d}") for i in range(5)]
    body = batch_of(*docs, example["export-authorization"], docs[0])

    r = client.post("/v1/batches", content=body, headers=xml_headers(country_tokens.ke))

    assert r.status_code == 200
    results = r.json()
    assert [x["document"]["number"] for x in results[:5]] == [
        f"KE-IA-B-{i:03d}" for i in range(5)
    ]
    assert [x["status"] for x in results] == [202] * 5 + [403, 202]
    assert results[5]["findings"][-1]["code"] == "SENDER_NOT_ISSUER"
    assert results[6]["outcome"] == "duplicate"
    assert _count(engine, "documents") == 5


def test_batch_streams_ndjson_when_asked(
    client: TestClient, country_tokens: Tokens, example: dict[str, bytes]
) -> None:
    ia = example["import-authorization"]
    body = batch_of(*(renumber(ia, f"KE-IA-S-{i:03d}") for i in range(3)))
    headers = xml_headers(country_tokens.ke, Accept="application/x-ndjson")

    with client.stream("POST", "/v1/batches", content=body, headers=headers) as r:
        assert r.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in r.iter_lines() if line]

    assert [x["outcome"] for x in lines] == ["accepted"] * 3


def test_batch_larger_than_a_document_is_spooled_and_ingested(
    client: TestClient,
    engine: Engine,
    country_tokens: Tokens,
    example: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A small in-memory limit makes this batch take the streamed file path.
    monkeypatch.setattr(xmlsafe, "MAX_DOCUMENT_BYTES", 4096)
    monkeypatch.setattr(xmlsafe, "STREAM_THRESHOLD_BYTES", 4096)
    ia = example["import-authorization"]
    body = batch_of(*(renumber(ia, f"KE-IA-L-{i:03d}") for i in range(6)))
    assert len(body) > 4096

    r = client.post("/v1/batches", content=body, headers=xml_headers(country_tokens.ke))

    assert [x["status"] for x in r.json()] == [202] * 6
    assert _count(engine, "documents") == 6


def test_validate_reports_findings_and_stores_nothing(
    client: TestClient,
    engine: Engine,
    country_tokens: Tokens,
    example: dict[str, bytes],
) -> None:
    broken = example["import-authorization"].replace(b"<City>Nairobi</City>", b"")
    body = batch_of(example["import-authorization"], broken)

    r = client.post(
        "/v1/validate", content=body, headers=xml_headers(country_tokens.ke)
    )

    assert r.status_code == 200
    answer = r.json()
    assert answer["valid"] is False
    assert [d["valid"] for d in answer["documents"]] == [True, False]
    assert answer["documents"][1]["findings"][0]["code"] == "SCHEMA_INVALID"
    for table in (
        "documents",
        "document_versions",
        "deliveries",
        "quarantine",
        "audit",
    ):
        assert _count(engine, table) == 0, table


def test_document_by_message_id_and_recipient_sees_only_delivered_versions(
    client: TestClient, country_tokens: Tokens, example: dict[str, bytes]
) -> None:
    ia = example["import-authorization"]
    first = client.post(
        "/v1/documents", content=ia, headers=xml_headers(country_tokens.ke)
    ).json()
    amended = ia.replace(
        b'<Quantity unit="g">1000</Quantity>', b'<Quantity unit="g">1200</Quantity>'
    )
    second = client.post(
        "/v1/documents", content=amended, headers=xml_headers(country_tokens.ke)
    ).json()
    assert second["outcome"] == "amended"

    by_message = client.get(
        f"/v1/documents/{first['message_id']}", headers=bearer(country_tokens.ke)
    )
    as_de = client.get(
        f"/v1/documents/{first['document_id']}", headers=bearer(country_tokens.de)
    )

    assert by_message.json()["id"] == first["document_id"]
    assert [v["version"] for v in by_message.json()["versions"]] == [1, 2]
    assert as_de.json()["version"] == 2
    assert "1200" in as_de.json()["xml"]


def test_unknown_document_is_404_with_what_to_use(
    client: TestClient, country_tokens: Tokens
) -> None:
    r = client.get("/v1/documents/nope", headers=bearer(country_tokens.ke))

    assert r.status_code == 404
    assert "document_id or message_id" in r.json()["error"]["action"]


def test_unknown_path_gets_the_common_error_body(client: TestClient) -> None:
    r = client.get("/v2/anything")

    assert r.status_code == 404
    assert r.json()["error"]["where"] == "GET /v2/anything"
