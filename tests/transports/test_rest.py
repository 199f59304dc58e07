"""REST specifics: retries, Retry-After, refusals, timeouts, configuration."""

from __future__ import annotations

import logging

import pytest

from i2es_hub.connections import parse_connection
from i2es_hub.errors import (
    ConfigError,
    PermanentTransportError,
    TransientTransportError,
)
from i2es_hub.simulators.rest_server import NationalRestSystem
from i2es_hub.transports import OutboundMessage, RestConfig, open_transport


def _config(national: NationalRestSystem, **extra: object) -> RestConfig:
    data = {"base_url": national.base_url, "backoff": 0.01, "max_backoff": 3, **extra}
    return RestConfig.from_mapping("fr-national", "FR", data)


def _message(number: int) -> OutboundMessage:
    return OutboundMessage(f"msg-{number:04d}", f"EA-{number}.xml", b"<a/>")


def test_429_with_retry_after_is_retried_and_honoured(
    national: NationalRestSystem, caplog: pytest.LogCaptureFixture
) -> None:
    national.inject("status", count=2, status=429, retry_after=1)
    with caplog.at_level(logging.WARNING), open_transport(_config(national)) as rest:
        results = rest.push([_message(1)])

    assert results[0].ok
    assert len(national.pushed) == 1
    assert national.requests.count("POST /incoming") == 3
    assert "(Retry-After)" in caplog.text


def test_5xx_is_retried_then_transient_once_the_budget_is_spent(
    national: NationalRestSystem,
) -> None:
    national.inject("status", count=10, status=503)
    with (
        open_transport(_config(national, max_attempts=3)) as rest,
        pytest.raises(TransientTransportError) as caught,
    ):
        rest.list_ready()

    assert national.requests.count("GET /outgoing") == 3
    assert "HTTP 503" in str(caught.value)
    assert f"{national.base_url}/outgoing" in str(caught.value)
    assert "FR/fr-national" in str(caught.value)


def test_retry_after_longer_than_max_backoff_stops_at_once(
    national: NationalRestSystem,
) -> None:
    national.inject("status", count=1, status=503, retry_after=120)
    with (
        open_transport(_config(national)) as rest,
        pytest.raises(TransientTransportError) as caught,
    ):
        rest.push([_message(1)])
    assert caught.value.retry_after == 120
    assert national.requests.count("POST /incoming") == 1


def test_4xx_is_not_retried(national: NationalRestSystem) -> None:
    national.inject("status", count=1, status=422)
    with open_transport(_config(national)) as rest:
        results = rest.push([_message(1), _message(2)])

    assert national.requests.count("POST /incoming") == 2
    assert not results[0].ok
    assert isinstance(results[0].error, PermanentTransportError)
    assert "HTTP 422" in str(results[0].error)
    assert results[1].ok
    assert [p.key for p in national.pushed] == ["msg-0002"]


def test_bad_token_is_permanent_and_never_shown(national: NationalRestSystem) -> None:
    national.token = "right-token"
    wrong = parse_connection(
        "fr_rest", '{"conn_type": "http", "host": "x", "extra": {"token": "wrong-one"}}'
    )
    with (
        open_transport(_config(national, conn_id="fr_rest"), wrong) as rest,
        pytest.raises(PermanentTransportError) as caught,
    ):
        rest.list_ready()
    assert "HTTP 401" in str(caught.value)
    assert "wrong-one" not in str(caught.value)
    assert national.requests.count("GET /outgoing") == 1

    right = parse_connection(
        "fr_rest",
        '{"conn_type": "http", "host": "x", "extra": {"token": "right-token"}}',
    )
    with open_transport(_config(national, conn_id="fr_rest"), right) as rest:
        assert rest.list_ready() == []


def test_slow_answer_times_out_and_is_retried(national: NationalRestSystem) -> None:
    national.add_outgoing("EA-1.xml", b"<a/>")
    national.inject("slow", count=1, delay=1.5)
    with open_transport(_config(national, timeout=0.5)) as rest:
        assert [f.name for f in rest.list_ready()] == ["EA-1.xml"]
    assert national.requests.count("GET /outgoing") == 2


def test_truncated_body_is_retried(national: NationalRestSystem) -> None:
    national.add_outgoing("EA-1.xml", b"<whole/>")
    with open_transport(_config(national)) as rest:
        ready = rest.list_ready()
        national.inject("truncate", count=1)
        [result] = list(rest.fetch(ready))
    assert result.data == b"<whole/>"


def test_idempotency_key_is_the_message_id(national: NationalRestSystem) -> None:
    with open_transport(_config(national)) as rest:
        rest.push([_message(7)])
    assert national.pushed[0].key == "msg-0007"
    assert national.pushed[0].filename == "msg-0007_EA-7.xml"


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"base_url": "http://example.org"}, "base_url"),
        ({"base_url": "ftp://127.0.0.1"}, "base_url"),
        ({"base_url": "https://user:pw@example.org"}, "base_url"),
        ({"base_url": "https://example.org", "max_attempts": 0}, "max_attempts"),
        ({"base_url": "https://example.org", "pull_path": "outgoing"}, "pull_path"),
        ({"base_url": "https://example.org", "verify": False}, "verify"),
    ],
)
def test_bad_settings_name_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        RestConfig.from_mapping("fr-national", "FR", data)
