"""Fixtures for the API: the application on each backend, country tokens, helpers.

``client`` drives the real application in-process (Starlette's TestClient over
httpx); ``tests/api/test_http_e2e.py`` runs it under uvicorn on loopback.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from i2es_hub import store, tokens
from i2es_hub.api import create_app

NS = "urn:i2es-hub:canonical:1"


@dataclass(frozen=True)
class Tokens:
    """Bearer tokens for the test countries."""

    ke: str
    de: str
    fr: str
    revoked_ke: str
    revoked_de: str

    def of(self, who: str) -> str:
        return getattr(self, who.lower())


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def xml_headers(token: str | None, **extra: str) -> dict[str, str]:
    return {**bearer(token), "Content-Type": "application/xml", **extra}


def renumber(document: bytes, number: str) -> bytes:
    """The same document under another DocumentNumber."""
    return re.sub(
        rb"<DocumentNumber>[^<]*</DocumentNumber>",
        b"<DocumentNumber>" + number.encode() + b"</DocumentNumber>",
        document,
        count=1,
    )


def batch_of(*documents: bytes) -> bytes:
    """A canonical Batch holding the documents (their XML declarations dropped)."""
    bodies = [re.sub(rb"^<\?xml[^>]*\?>\s*", b"", d) for d in documents]
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Batch xmlns="'
        + NS.encode()
        + b'">\n'
        + b"\n".join(bodies)
        + b"\n</Batch>\n"
    )


@pytest.fixture
def app(engine: Engine) -> FastAPI:
    return create_app(engine)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def country_tokens(engine: Engine) -> Tokens:
    with store.write_transaction(engine) as conn:
        made = {cc: tokens.create(conn, cc, "tests") for cc in ("KE", "DE", "FR")}
        old_ke = tokens.create(conn, "KE", "old")
        old_de = tokens.create(conn, "DE", "old")
        tokens.revoke(conn, old_ke.info.id)
        tokens.revoke(conn, old_de.info.id)
    return Tokens(
        str(made["KE"].token),
        str(made["DE"].token),
        str(made["FR"].token),
        str(old_ke.token),
        str(old_de.token),
    )
