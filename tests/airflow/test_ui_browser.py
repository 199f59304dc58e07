"""Headless Chromium opens the Airflow UI on 127.0.0.1, logged in, and sees the DAGs.

The API server runs from the session's Airflow home with the hub's DAGs written to
its database by ``airflow dags reserialize``. The login is the simple auth
manager's: the generated admin password is read from the file it writes, traded
for a token at ``/auth/token`` (what the login page does), and the token is set as
the UI's cookie over the DevTools protocol. The screenshot goes to the test's
temporary folder; set I2ES_HUB_UPDATE_SCREENSHOT=1 to refresh docs/airflow-ui.png.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from i2es_hub import demo

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,900",
]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, timeout: float) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = httpx.get(url, timeout=2)
            if answer.status_code < 500:
                return answer
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout} s")
        time.sleep(0.5)


class DevTools:
    """A minimal DevTools protocol client for one page."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0

    def call(self, method: str, **params: object) -> dict:
        self.next_id += 1
        self.ws.send(
            json.dumps({"id": self.next_id, "method": method, "params": params})
        )
        while True:
            message = json.loads(self.ws.recv(timeout=30))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})


def test_ui_lists_the_hub_dags(airflow_home: Path, dags_folder: Path) -> None:
    port = _free_port()
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        }
    )
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run(
        [airflow, "dags", "reserialize"], env=env, check=True, capture_output=True
    )

    with demo.airflow_components(env, commands=[demo.API_SERVER]):
        base = f"http://127.0.0.1:{port}"
        _wait(f"{base}/api/v2/monitor/health", timeout=120)
        passwords = json.loads(
            Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).read_text()
        )
        login = httpx.post(
            f"{base}/auth/token",
            json={"username": "admin", "password": passwords["admin"]},
            timeout=10,
        )
        assert login.status_code == 201, login.text
        token = login.json()["access_token"]

        profile = tempfile.mkdtemp(prefix="i2es-chromium-")
        debug_port = _free_port()
        browser = subprocess.Popen(
            [
                CHROMIUM,
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--remote-debugging-port={debug_port}",
                "--remote-debugging-address=127.0.0.1",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        from websockets.sync.client import connect

        try:
            _wait(f"http://127.0.0.1:{debug_port}/json/version", timeout=30)
            pages = httpx.get(f"http://127.0.0.1:{debug_port}/json/list").json()
            page = next(p for p in pages if p["type"] == "page")
            with connect(page["webSocketDebuggerUrl"], max_size=50_000_000) as ws:
                tools = DevTools(ws)
                tools.call("Network.enable")
                tools.call("Network.setCookie", name="_token", value=token, url=base)
                tools.call("Page.enable")
                tools.call("Page.navigate", url=f"{base}/dags")
                text = ""
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    text = tools.call(
                        "Runtime.evaluate", expression="document.body.innerText"
                    )["result"].get("value", "")
                    if "connector_ke-ppb" in text and "hub_alerts" in text:
                        break
                    time.sleep(1)
                shot = tools.call("Page.captureScreenshot", format="png")
                target = (
                    ROOT / "docs" / "airflow-ui.png"
                    if os.environ.get("I2ES_HUB_UPDATE_SCREENSHOT") == "1"
                    else Path(tempfile.gettempdir()) / "i2es-airflow-ui.png"
                )
                target.write_bytes(base64.b64decode(shot["data"]))
        finally:
            browser.terminate()
            browser.wait(timeout=20)
            shutil.rmtree(profile, ignore_errors=True)

    for dag_id in ("connector_ke-ppb", "connector_de-bfarm", "connector_ch-swissmedic"):
        assert dag_id in text
    assert "hub_alerts" in text
