"""End to end over real HTTP: ``i2es-hub serve`` under uvicorn on loopback.

The server runs as its own process, started the way an operator starts it, on a
free port of 127.0.0.1, against each backend; tokens come from the real CLI. It is
stopped at the end of every test.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import bearer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(hub) -> Iterator[str]:
    """The base URL of a running ``i2es-hub serve``."""
    port = _free_port()
    log = (hub.cwd / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "i2es_hub.cli", "serve", "--port", str(port)],
        env=hub.env,
        cwd=hub.cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/v1/openapi.json", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"i2es-hub serve did not come up on {base}: "
                    + (hub.cwd / "serve.log").read_text(errors="replace")
                )
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def test_upload_chain_inbox_ack_and_status_over_http(
    served: str, hub, example: dict[str, bytes]
) -> None:
    ke = hub("tokens", "create", "--country", "KE", check=True).stdout.split()[-1]
    de = hub("tokens", "create", "--country", "DE", check=True).stdout.split()[-1]

    with httpx.Client(base_url=served, timeout=30) as http:
        xml = {"Content-Type": "application/xml"}
        answers = {}
        for name, token in (
            ("import-authorization", ke),
            ("export-authorization", de),
            ("endorsement-shortfall", ke),
        ):
            r = http.post(
                "/v1/documents", content=example[name], headers={**xml, **bearer(token)}
            )
            assert r.status_code == 202, r.text
            answers[name] = r.json()

        inbox = http.get("/v1/inbox", headers=bearer(de)).json()
        alert = next(m for m in inbox["messages"] if m["kind"] == "alert")
        assert alert["alert"]["code"] == "SHORTFALL"
        assert "<Code>SHORTFALL</Code>" in alert["xml"]
        for message in inbox["messages"]:
            ack = http.post(f"/v1/inbox/{message['id']}/ack", headers=bearer(de))
            assert ack.status_code == 200, ack.text

        endorsement = answers["endorsement-shortfall"]["document_id"]
        status = http.get(
            f"/v1/documents/{endorsement}/status", headers=bearer(ke)
        ).json()
        ea = answers["export-authorization"]["document_id"]
        ea_doc = http.get(f"/v1/documents/{ea}", headers=bearer(ke)).json()
        no_token = http.get("/v1/inbox")

    assert {(d["kind"], d["state"]) for d in status["deliveries"]} == {
        ("document", "acknowledged"),
        ("alert", "acknowledged"),
    }
    assert ea_doc["state"] == "endorsed"
    assert ea_doc["number"] == "DE-EA-2026-7781"
    assert no_token.status_code == 401
    server_log = (hub.cwd / "serve.log").read_text(errors="replace")
    assert "POST /v1/documents" in server_log
    assert ke not in server_log
    assert de not in server_log


def test_server_listens_on_loopback_only(served: str) -> None:
    port = int(served.rsplit(":", 1)[1])
    try:
        table = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        pytest.skip("no /proc/net/tcp on this system to read listening sockets from")
    listening = set()
    for line in table:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            listening.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))

    assert listening == {"127.0.0.1"}
