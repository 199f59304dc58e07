"""A simulated national REST system, on loopback, for tests and the demo.

It speaks the protocol described in `i2es_hub.transports.rest`: it holds
documents waiting for the hub (``outgoing``), lists them page by page, serves
their bytes, forgets them when acknowledged, and records what the hub pushes,
answering a repeated ``Idempotency-Key`` as a duplicate.

Faults can be injected for the next N requests: an error status (with
``Retry-After``), a slow answer, or a body cut short (the connection is closed
before the announced ``Content-Length`` is sent).

Example::

    with rest_server() as national:
        national.add_outgoing("EA-1.xml", b"<...>")
        national.inject("status", count=2, status=429, retry_after=0)
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

logger = logging.getLogger(__name__)


@dataclass
class Pushed:
    """One message the hub pushed.

    Attributes:
        key: Its ``Idempotency-Key``.
        filename: Its ``X-Filename`` header.
        content_type: Its ``Content-Type`` header.
        body: Its bytes.
    """

    key: str
    filename: str
    content_type: str
    body: bytes


@dataclass
class _Fault:
    kind: str  # "status", "slow" or "truncate"
    count: int
    status: int = 503
    retry_after: float | None = None
    delay: float = 0.0


@dataclass
class NationalRestSystem:
    """The simulator's state, shared with the test that drives it.

    Attributes:
        base_url: Root URL, ``http://127.0.0.1:<port>``.
        outgoing: Documents waiting for the hub: id -> (filename, type, body, created).
        pushed: Messages received, in order, duplicates excluded.
        requests: Every request seen, as ``"METHOD /path"``.
        token: Bearer token required on every request, or None.
    """

    base_url: str = ""
    outgoing: dict[str, tuple[str, str, bytes, float]] = field(default_factory=dict)
    pushed: list[Pushed] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    token: str | None = None
    _faults: list[_Fault] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_outgoing(
        self,
        filename: str,
        body: bytes,
        content_type: str = "application/xml",
        *,
        item_id: str | None = None,
    ) -> str:
        """Queue a document for the hub to pull; return its id."""
        with self._lock:
            ident = item_id or f"doc-{next(self._ids):06d}"
            self.outgoing[ident] = (filename, content_type, body, time.time())
        return ident

    def inject(
        self,
        kind: str,
        *,
        count: int = 1,
        status: int = 503,
        retry_after: float | None = None,
        delay: float = 0.0,
    ) -> None:
        """Make the next ``count`` requests fail in the given way.

        Args:
            kind: ``status`` (answer ``status``), ``slow`` (wait ``delay``
                seconds, then answer normally) or ``truncate`` (cut the body).
            count: How many requests are affected.
            status: The status for ``status`` faults.
            retry_after: Seconds put in a ``Retry-After`` header, if any.
            delay: Seconds of delay for ``slow`` faults.
        """
        if kind not in ("status", "slow", "truncate"):
            raise ValueError(f"unknown fault {kind!r}")
        with self._lock:
            self._faults.append(_Fault(kind, count, status, retry_after, delay))

    def clear_faults(self) -> None:
        """Remove every pending fault."""
        with self._lock:
            self._faults.clear()

    def _next_fault(self) -> _Fault | None:
        with self._lock:
            while self._faults and self._faults[0].count <= 0:
                self._faults.pop(0)
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.count -= 1
            return fault


def build_app(system: NationalRestSystem) -> FastAPI:
    """Build the FastAPI application serving ``system``."""
    app = FastAPI(title="Simulated national system", openapi_url=None)
    seen_keys: set[str] = set()

    @app.middleware("http")
    async def faults(request: Request, call_next: Any) -> Response:
        system.requests.append(f"{request.method} {request.url.path}")
        if system.token is not None:
            expected = f"Bearer {system.token}"
            if request.headers.get("authorization") != expected:
                return JSONResponse({"detail": "bad token"}, status_code=401)
        fault = system._next_fault()
        if fault is None:
            response: Response = await call_next(request)
            return response
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay)
            response = await call_next(request)
            return response
        if fault.kind == "truncate":
            return _Truncated()
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(int(fault.retry_after))
        return JSONResponse(
            {"detail": "injected fault"}, status_code=fault.status, headers=headers
        )

    @app.get("/outgoing")
    def list_outgoing(limit: int = 100, after: str | None = None) -> dict[str, Any]:
        with system._lock:
            ids = sorted(system.outgoing)
        if after is not None:
            ids = [ident for ident in ids if ident > after]
        page = ids[:limit]
        items = []
        for ident in page:
            filename, content_type, body, created = system.outgoing[ident]
            items.append(
                {
                    "id": ident,
                    "filename": filename,
                    "content_type": content_type,
                    "size": len(body),
                    "created": created,
                }
            )
        more = len(ids) > len(page)
        return {"items": items, "next": page[-1] if more and page else None}

    @app.get("/outgoing/{ident}")
    def get_outgoing(ident: str) -> Response:
        entry = system.outgoing.get(ident)
        if entry is None:
            return JSONResponse({"detail": "no such document"}, status_code=404)
        return Response(entry[2], media_type=entry[1])

    @app.post("/outgoing/ack")
    async def acknowledge(request: Request) -> dict[str, int]:
        payload = await request.json()
        count = 0
        with system._lock:
            for ident in payload.get("ids", []):
                if system.outgoing.pop(str(ident), None) is not None:
                    count += 1
        return {"acknowledged": count}

    @app.post("/incoming")
    async def incoming(request: Request) -> Response:
        key = request.headers.get("idempotency-key")
        if not key:
            return JSONResponse({"detail": "Idempotency-Key is required"}, 400)
        try:
            body = await request.body()
        except ClientDisconnect:
            # the hub gave up mid-upload (a timeout under test): nothing was
            # received, as a real system would see it; not a server error
            logger.info("upload %s abandoned by the client before its end", key)
            return Response(status_code=400)
        with system._lock:
            if key in seen_keys:
                return JSONResponse({"duplicate": True}, status_code=200)
            seen_keys.add(key)
            system.pushed.append(
                Pushed(
                    key,
                    request.headers.get("x-filename", ""),
                    request.headers.get("content-type", ""),
                    body,
                )
            )
        return JSONResponse({"duplicate": False}, status_code=201)

    return app


class _SimulatedDrop(ConnectionAbortedError):
    """Raised on purpose to make uvicorn drop a connection mid-body."""


class _QuietDrops(logging.Filter):
    """Keeps uvicorn from logging our simulated drops as application errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _SimulatedDrop))


class _Truncated(Response):
    """Announces 1000 bytes, sends 10, then drops the connection."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"1000")],
            }
        )
        await send(
            {"type": "http.response.body", "body": b"<truncated", "more_body": True}
        )
        raise _SimulatedDrop("simulated dropped connection")


@contextlib.contextmanager
def rest_server(
    *, token: str | None = None, timeout: float = 10.0
) -> Iterator[NationalRestSystem]:
    """Run the simulated national system on 127.0.0.1 for the duration of the context.

    Args:
        token: Bearer token to require, or None for no authentication.
        timeout: Seconds to wait for the server to start.

    Yields:
        The system's state, with ``base_url`` set.
    """
    system = NationalRestSystem(token=token)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    system.base_url = f"http://127.0.0.1:{port}"

    config = uvicorn.Config(
        build_app(system), log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    quiet = _QuietDrops()
    logging.getLogger("uvicorn.error").addFilter(quiet)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"rest-{port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError(
                f"the simulated REST system did not start on port {port}"
            )
        time.sleep(0.01)
    logger.info("simulated REST system started at %s", system.base_url)
    try:
        yield system
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()
        logging.getLogger("uvicorn.error").removeFilter(quiet)
        logger.info("simulated REST system at %s stopped", system.base_url)


__all__ = ["NationalRestSystem", "Pushed", "build_app", "rest_server"]
