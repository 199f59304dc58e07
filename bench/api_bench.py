"""Benchmark the hub API against a bare FastAPI endpoint that only parses the XML.

Run: ``.venv/bin/python bench/api_bench.py [--singles N] [--batches N]``.

Both servers run the same way, in the same run: uvicorn in its own process on
127.0.0.1, one worker, default logging. The hub is started with ``i2es-hub serve``
on a fresh SQLite file (or the database in ``I2ES_HUB_BENCH_DATABASE_URL``); the
reference is a FastAPI app with one route that reads the body and parses it with
lxml. The same documents go to both:

* single uploads: distinct import authorizations, one per request, from 8
  concurrent clients; documents per second and p50/p99 latency;
* batch uploads: canonical ``<Batch>`` files of 500 documents, one client;
  documents per second and p50/p99 latency per batch.

Writes ``bench/results/api.json`` and prints each figure beside its reference.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "api.json"
HUB = [sys.executable, "-m", "i2es_hub.cli"]
CLIENTS = 8
BATCH = 500

REFERENCE_APP = """
import uvicorn
from fastapi import FastAPI, Request
from lxml import etree

app = FastAPI()
parser = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True)


@app.post("/parse")
async def parse(request: Request) -> dict:
    root = etree.fromstring(await request.body(), parser)
    return {"elements": len(root)}


uvicorn.run(app, host="127.0.0.1", port=int(__import__("sys").argv[1]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(
    command: Callable[[int], list[str]], env: dict[str, str], log: Path
) -> Iterator[str]:
    """Run a uvicorn process on a free loopback port; yield its base URL."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            command(port),
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(base + "/", timeout=1)
                    break
                except httpx.TransportError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"server did not start; see {log}") from None
                    time.sleep(0.1)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def documents(template: bytes, prefix: str, count: int) -> list[bytes]:
    """``count`` distinct copies of a document, renumbered."""
    head = re.sub(rb"^<\?xml[^>]*\?>\s*", b"", template)
    return [
        re.sub(
            rb"<DocumentNumber>[^<]*</DocumentNumber>",
            f"<DocumentNumber>{prefix}-{i:06d}</DocumentNumber>".encode(),
            head,
            count=1,
        )
        for i in range(count)
    ]


def batch_of(docs: Sequence[bytes]) -> bytes:
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<Batch xmlns="urn:i2es-hub:canonical:1">\n'
        + b"\n".join(docs)
        + b"\n</Batch>\n"
    )


def run_clients(
    base: str,
    path: str,
    bodies: Sequence[bytes],
    clients: int,
    headers: dict[str, str],
    check: Callable[[httpx.Response], None],
) -> tuple[float, list[float]]:
    """Post every body from ``clients`` threads; return (seconds, latencies)."""
    latencies: list[float] = []
    lock = threading.Lock()
    queue = list(reversed(bodies))
    errors: list[BaseException] = []

    def worker() -> None:
        with httpx.Client(base_url=base, timeout=300, headers=headers) as http:
            while True:
                with lock:
                    if not queue or errors:
                        return
                    body = queue.pop()
                start = time.perf_counter()
                try:
                    check(http.post(path, content=body))
                except BaseException as exc:  # reported after the threads join
                    with lock:
                        errors.append(exc)
                    return
                took = time.perf_counter() - start
                with lock:
                    latencies.append(took)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed, latencies


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def expect(status: int) -> Callable[[httpx.Response], None]:
    def check(r: httpx.Response) -> None:
        if r.status_code != status:
            raise RuntimeError(f"{r.request.url}: {r.status_code} {r.text[:300]}")

    return check


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--singles", type=int, default=2000)
    args.add_argument("--batches", type=int, default=10)
    opts = args.parse_args()

    work = Path(tempfile.mkdtemp(prefix="i2es-api-bench-"))
    url = os.environ.get("I2ES_HUB_BENCH_DATABASE_URL") or f"sqlite:///{work}/hub.db"
    env = dict(os.environ, I2ES_HUB_DATABASE_URL=url)
    subprocess.run([*HUB, "db", "upgrade"], env=env, check=True, capture_output=True)
    created = subprocess.run(
        [*HUB, "tokens", "create", "--country", "KE", "--label", "bench"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    auth = {
        "Authorization": f"Bearer {created.stdout.split()[-1]}",
        "Content-Type": "application/xml",
    }
    ia = (ROOT / "examples" / "import-authorization.xml").read_bytes()
    singles = documents(ia, "KE-S", opts.singles)
    batches = [
        batch_of(documents(ia, f"KE-B{b:03d}", BATCH)) for b in range(opts.batches)
    ]
    warm = documents(ia, "KE-W", 20)

    (work / "reference.py").write_text(REFERENCE_APP)
    figures: dict[str, tuple[float, list[float]]] = {}

    def hub_cmd(port: int) -> list[str]:
        return [*HUB, "serve", "--port", str(port)]

    def ref_cmd(port: int) -> list[str]:
        return [sys.executable, str(work / "reference.py"), str(port)]

    with server(hub_cmd, env, work / "hub.log") as hub:
        run_clients(hub, "/v1/documents", warm, CLIENTS, auth, expect(202))
        figures["hub single"] = run_clients(
            hub, "/v1/documents", singles, CLIENTS, auth, expect(202)
        )
        figures["hub batch"] = run_clients(
            hub, "/v1/batches", batches, 1, auth, expect(200)
        )
    with server(ref_cmd, env, work / "reference.log") as ref:
        run_clients(ref, "/parse", warm, CLIENTS, auth, expect(200))
        figures["ref single"] = run_clients(
            ref, "/parse", singles, CLIENTS, auth, expect(200)
        )
        figures["ref batch"] = run_clients(ref, "/parse", batches, 1, auth, expect(200))

    rows = []

    def add(
        name: str, value: float, unit: str, reference: str, ref_value: float
    ) -> None:
        rows.append(
            {
                "name": name,
                "value": round(value, 3),
                "unit": unit,
                "reference": reference,
                "reference_value": round(ref_value, 3),
                "ratio": round(value / ref_value, 4) if ref_value else None,
            }
        )

    for kind, per_request, clients in (
        ("single", 1, CLIENTS),
        ("batch", BATCH, 1),
    ):
        hub_s, hub_lat = figures[f"hub {kind}"]
        ref_s, ref_lat = figures[f"ref {kind}"]
        what = (
            f"{len(hub_lat)} uploads, {clients} concurrent clients"
            if kind == "single"
            else f"{len(hub_lat)} batches of {BATCH}, 1 client"
        )
        reference = f"bare FastAPI endpoint parsing the same XML with lxml, {what}"
        docs = len(hub_lat) * per_request
        add(
            f"api {kind} upload rate ({what})",
            docs / hub_s,
            "documents/s",
            reference,
            len(ref_lat) * per_request / ref_s,
        )
        for q in (50, 99):
            add(
                f"api {kind} upload p{q} latency ({what})",
                percentile(hub_lat, q) * 1000,
                "ms",
                reference,
                percentile(ref_lat, q) * 1000,
            )

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=2) + "\n")
    backend = url.split(":", 1)[0]
    print(f"database: {backend}; results in {RESULTS.relative_to(ROOT)}")
    for r in rows:
        print(
            f"{r['name']:<62} {r['value']:>10.1f} {r['unit']:<12}"
            f" reference {r['reference_value']:>10.1f}  ratio {r['ratio']}"
        )


if __name__ == "__main__":
    main()
