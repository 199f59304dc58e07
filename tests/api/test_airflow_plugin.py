"""The Airflow plugin serves the same API under /i2es."""

from __future__ import annotations

import importlib

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from .conftest import Tokens, bearer


def test_plugin_mounts_the_api_under_i2es(
    db_url: str, country_tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("airflow.plugins_manager")
    monkeypatch.setenv("I2ES_HUB_DATABASE_URL", db_url)
    module = importlib.reload(importlib.import_module("i2es_hub.api.airflow_plugin"))
    plugin = module.I2esHubPlugin
    [entry] = plugin.fastapi_apps
    assert plugin.name == "i2es_hub"
    assert (entry["url_prefix"], entry["name"]) == ("/i2es", "i2es-hub API")

    # Mounted the way Airflow's API server mounts plugin applications.
    host = FastAPI()
    host.mount(entry["url_prefix"], entry["app"])
    with TestClient(host) as client:
        spec = client.get("/i2es/v1/openapi.json")
        inbox = client.get("/i2es/v1/inbox", headers=bearer(country_tokens.de))
        anonymous = client.get("/i2es/v1/inbox")

    assert spec.status_code == 200
    assert "/v1/documents" in spec.json()["paths"]
    assert inbox.status_code == 200
    assert anonymous.status_code == 401
