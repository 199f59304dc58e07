"""Fixtures for the hostile corpus: the canary, the recorder, resource bounds."""

from __future__ import annotations

import http.server
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.corpus.generate import Context

TIME_BOUND_S = 30.0
"""Safety bound per case and channel, in seconds. Not a speed benchmark."""

RSS_BOUND_MB = 300.0
"""Safety bound on peak resident memory growth per case and channel, in MB."""


@dataclass
class Recorder:
    """A loopback HTTP server that answers 404 and remembers every request."""

    port: int
    paths: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    """Any request here means the hub fetched something an attacker named."""
    record = Recorder(0)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            record.paths.append(self.path)
            self.send_error(404)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    record.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield record
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def canary_secret() -> str:
    return f"CANARY-{uuid.uuid4()}"


@pytest.fixture(scope="module")
def corpus_ctx(
    tmp_path_factory: pytest.TempPathFactory, recorder: Recorder, canary_secret: str
) -> Context:
    """The canary file lives outside every folder the hub is given."""
    outside = tmp_path_factory.mktemp("outside-the-hub")
    canary = outside / "canary.txt"
    canary.write_text(canary_secret + "\n", encoding="utf-8")
    work = tmp_path_factory.mktemp("corpus-work")
    return Context(canary, recorder.port, work)


def _status_kb(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field_name}")


class Measure:
    """Wall time and peak RSS growth of this process over a block.

    The peak is Linux's high-water mark, reset at the start through
    ``/proc/self/clear_refs``, so it catches a spike that is freed again.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.rss_mb = 0.0

    def __enter__(self) -> Measure:
        Path("/proc/self/clear_refs").write_text("5")
        self._base = _status_kb("VmRSS")
        self._start = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self._start
        self.rss_mb = max(0, _status_kb("VmHWM") - self._base) / 1024
