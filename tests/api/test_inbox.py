"""Inbox, acknowledgement and status: the recipient's side, and the real-time alert."""

from __future__ import annotations

from fastapi.testclient import TestClient
from lxml import etree
from sqlalchemy import select
from sqlalchemy.engine import Engine

from i2es_hub import store

from .conftest import NS, Tokens, batch_of, bearer, renumber, xml_headers


def _upload_chain(
    client: TestClient, tok: Tokens, example: dict[str, bytes]
) -> dict[str, dict]:
    answers = {}
    for name, country in (
        ("import-authorization", tok.ke),
        ("export-authorization", tok.de),
        ("endorsement-shortfall", tok.ke),
    ):
        r = client.post(
            "/v1/documents", content=example[name], headers=xml_headers(country)
        )
        assert r.status_code == 202, r.text
        answers[name] = r.json()
    return answers


def test_shortfall_alert_is_in_the_exporters_inbox_when_the_upload_returns(
    client: TestClient,
    engine: Engine,
    country_tokens: Tokens,
    example: dict[str, bytes],
) -> None:
    answers = _upload_chain(client, country_tokens, example)

    # No worker, no scheduler ran in between: the alert was written with the upload.
    assert "SHORTFALL" in {
        f["code"] for f in answers["endorsement-shortfall"]["findings"]
    }
    inbox = client.get("/v1/inbox", headers=bearer(country_tokens.de)).json()

    alerts = [m for m in inbox["messages"] if m["kind"] == "alert"]
    assert [a["alert"]["code"] for a in alerts] == ["SHORTFALL"]
    assert alerts[0]["title"] == "SHORTFALL alert"
    root = etree.fromstring(alerts[0]["xml"].encode())
    figures = root.findall(f".//{{{NS}}}Alert/{{{NS}}}Code")
    assert [f.text for f in figures] == ["SHORTFALL"]
    kinds = [
        (m["kind"], m["document"]["number"] if m["document"] else None)
        for m in inbox["messages"]
    ]
    assert kinds == [
        ("document", "KE-IA-2026-00042"),
        ("document", "KE-EN-2026-00108"),
        ("alert", None),
    ]


def test_inbox_messages_carry_the_rendered_envelope(
    client: TestClient, country_tokens: Tokens, example: dict[str, bytes]
) -> None:
    client.post(
        "/v1/documents",
        content=example["import-authorization"],
        headers=xml_headers(country_tokens.ke),
    )

    message = client.get("/v1/inbox", headers=bearer(country_tokens.de)).json()[
        "messages"
    ][0]

    root = etree.fromstring(message["xml"].encode())
    assert root.tag == f"{{{NS}}}Message"
    assert root.findtext(f"{{{NS}}}MessageId") == message["id"]
    assert root.find(f"{{{NS}}}Payload/{{{NS}}}ImportAuthorization") is not None
    assert message["title"] == "import-authorization KE/KE-IA-2026-00042"


def test_cursor_pages_through_without_gaps_or_repeats_while_messages_arrive(
    client: TestClient, country_tokens: Tokens, example: dict[str, bytes]
) -> None:
    ia = example["import-authorization"]
    first = batch_of(*(renumber(ia, f"KE-IA-P-{i:03d}") for i in range(7)))
    client.post("/v1/batches", content=first, headers=xml_headers(country_tokens.ke))

    seen: list[str] = []
    after = 0
    page = client.get(
        "/v1/inbox",
        params={"after": after, "limit": 3},
        headers=bearer(country_tokens.de),
    ).json()
    seen += [m["document"]["number"] for m in page["messages"]]
    # More arrive between two pages.
    later = batch_of(*(renumber(ia, f"KE-IA-P-{i:03d}") for i in range(7, 10)))
    client.post("/v1/batches", content=later, headers=xml_headers(country_tokens.ke))
    after = page["next_after"]
    while page["more"] or page["messages"]:
        page = client.get(
            "/v1/inbox",
            params={"after": after, "limit": 3},
            headers=bearer(country_tokens.de),
        ).json()
        seen += [m["document"]["number"] for m in page["messages"]]
        after = page["next_after"]

    assert seen == [f"KE-IA-P-{i:03d}" for i in range(10)]


def test_fetching_marks_delivered_and_ack_marks_acknowledged_once(
    client: TestClient,
    engine: Engine,
    country_tokens: Tokens,
    example: dict[str, bytes],
) -> None:
    client.post(
        "/v1/documents",
        content=example["import-authorization"],
        headers=xml_headers(country_tokens.ke),
    )
    dl = store.deliveries

    def state() -> str:
        with store.read_transaction(engine) as conn:
            return conn.execute(select(dl.c.state)).scalar_one()

    assert state() == "pending"
    message = client.get("/v1/inbox", headers=bearer(country_tokens.de)).json()[
        "messages"
    ][0]
    assert (message["state"], state()) == ("delivered", "delivered")

    first = client.post(
        f"/v1/inbox/{message['id']}/ack", headers=bearer(country_tokens.de)
    )
    again = client.post(
        f"/v1/inbox/{message['id']}/ack", headers=bearer(country_tokens.de)
    )

    assert first.status_code == again.status_code == 200
    assert again.json()["acknowledged_at"] == first.json()["acknowledged_at"]
    assert state() == "acknowledged"
    refetched = client.get("/v1/inbox", headers=bearer(country_tokens.de)).json()[
        "messages"
    ][0]
    assert refetched["state"] == "acknowledged"


def test_ack_of_unknown_message_is_404(
    client: TestClient, country_tokens: Tokens
) -> None:
    r = client.post("/v1/inbox/0123456789abcdef/ack", headers=bearer(country_tokens.de))

    assert r.status_code == 404
    assert "GET /v1/inbox" in r.json()["error"]["action"]


def test_status_shows_each_recipients_delivery_state_to_the_issuer(
    client: TestClient, country_tokens: Tokens, example: dict[str, bytes]
) -> None:
    answers = _upload_chain(client, country_tokens, example)
    endorsement = answers["endorsement-shortfall"]["document_id"]
    inbox = client.get("/v1/inbox", headers=bearer(country_tokens.de)).json()
    alert = next(m for m in inbox["messages"] if m["kind"] == "alert")
    client.post(f"/v1/inbox/{alert['id']}/ack", headers=bearer(country_tokens.de))

    status = client.get(
        f"/v1/documents/{endorsement}/status", headers=bearer(country_tokens.ke)
    ).json()

    states = {(d["recipient"], d["kind"]): d["state"] for d in status["deliveries"]}
    assert states == {("DE", "document"): "delivered", ("DE", "alert"): "acknowledged"}
    assert status["document"]["state"] == "accepted"
    ea = answers["export-authorization"]["document_id"]
    ea_status = client.get(
        f"/v1/documents/{ea}/status", headers=bearer(country_tokens.de)
    ).json()
    assert ea_status["document"]["state"] == "endorsed"


def test_inbox_rejects_a_negative_cursor_with_a_clear_body(
    client: TestClient, country_tokens: Tokens
) -> None:
    r = client.get("/v1/inbox", params={"after": -1}, headers=bearer(country_tokens.de))

    assert r.status_code == 422
    assert "query.after" in r.json()["error"]["message"]
