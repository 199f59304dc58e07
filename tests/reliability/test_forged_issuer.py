"""A country delivers documents only as itself, whatever channel it uses.

A connector's credentials belong to one country: a file on Kenya's SFTP server
(or in Switzerland's REST outbox) that claims another issuer is rejected with
SENDER_NOT_ISSUER, kept in quarantine and audited with the connector as actor.
The hub's API does the same with a forged issuer: 403, quarantine, audit.
"""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from i2es_hub import store, tokens
from i2es_hub.api import create_app
from i2es_hub.exchange import pull
from i2es_hub.simulators.national import national_system, sample
from tests.reliability.support import count_documents, import_authorization, report


def _audit_and_quarantine(engine: Engine) -> tuple[list[dict], list[dict]]:
    with store.read_transaction(engine) as conn:
        audit = [dict(r) for r in conn.execute(select(store.audit)).mappings()]
        quarantine = [
            dict(r) for r in conn.execute(select(store.quarantine)).mappings()
        ]
    return audit, quarantine


def _assert_refused_and_audited(
    engine: Engine, actor: str, claimed: str, original: bytes
) -> None:
    assert count_documents(engine) == 0
    audit, quarantine = _audit_and_quarantine(engine)
    [row] = quarantine
    assert row["original"] == original
    assert row["issuer"] == claimed
    assert row["sender"] == actor.split("/")[0]
    assert "SENDER_NOT_ISSUER" in {f["code"] for f in row["findings"]}
    [entry] = audit
    assert entry["actor"] == actor
    assert entry["to_state"] == "rejected"
    assert "SENDER_NOT_ISSUER" in entry["reason"]
    assert row["id"] in entry["reason"]


def test_sftp_connector_cannot_deliver_another_countrys_document(
    engine: Engine, tmp_path: Path
) -> None:
    forged = sample("ke-ppb", "import-authorization.xml").replace(
        b'<Issuer country="KEN">', b'<Issuer country="DEU">'
    )
    with national_system("ke-ppb", tmp_path) as kenya:
        kenya.send("forged.xml", forged)
        [result] = pull(kenya.connector, engine, connection=kenya.connection).results
    assert result.outcome == "rejected"
    _assert_refused_and_audited(engine, "KE/ke-ppb", "DE", forged)
    report("forged-issuer sftp", connector="ke-ppb", claimed="DE", refused=1, audited=1)


def test_rest_connector_cannot_deliver_another_countrys_document(
    engine: Engine, tmp_path: Path
) -> None:
    document = json.loads(sample("ch-swissmedic", "import-authorization.json"))
    document["issuer"]["country"] = "DE"
    forged = json.dumps(document).encode()
    with national_system("ch-swissmedic", tmp_path) as switzerland:
        switzerland.send("forged.json", forged)
        [result] = pull(
            switzerland.connector, engine, connection=switzerland.connection
        ).results
    assert result.outcome == "rejected"
    _assert_refused_and_audited(engine, "CH/ch-swissmedic", "DE", forged)
    report("forged-issuer rest", connector="ch-swissmedic", claimed="DE", refused=1)


def test_api_caller_cannot_submit_another_countrys_document(engine: Engine) -> None:
    with store.write_transaction(engine) as conn:
        kenya = tokens.create(conn, "KE", "reliability")
    forged = (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + import_authorization(1, "DE")
    ).encode()
    with TestClient(create_app(engine), raise_server_exceptions=False) as client:
        answer = client.post(
            "/v1/documents",
            content=forged,
            headers={
                "Authorization": f"Bearer {kenya.token}",
                "Content-Type": "application/xml",
            },
        )
    assert answer.status_code == 403, answer.text
    assert "SENDER_NOT_ISSUER" in answer.text
    audit, _ = _audit_and_quarantine(engine)
    [entry] = audit
    assert entry["actor"].startswith("KE/")
    _assert_refused_and_audited(engine, entry["actor"], "DE", forged)
    report("forged-issuer api", caller="KE", claimed="DE", status=403, audited=1)
