"""REST transport (httpx): pull pages from a national system, push with keys.

The protocol a national system implements (``i2es_hub.simulators.rest_server``
is a working example):

* ``GET {base}{pull_path}?after=<cursor>&limit=<n>`` returns
  ``{"items": [{"id", "filename", "content_type", "size", "created"}],
  "next": <cursor or null>}``: documents waiting for the hub, oldest first.
  Only complete documents are listed, so no readiness delay applies.
* ``GET {base}{pull_path}/<id>`` returns one document's bytes.
* ``POST {base}{ack_path}`` with ``{"ids": [...]}`` acknowledges documents
  after the hub has committed them; they then leave the list. The answer
  ``{"acknowledged": n}`` counts those newly acknowledged; acknowledging
  twice is harmless.
* ``POST {base}{push_path}`` with the message bytes, headers
  ``Idempotency-Key: <message id>``, ``Content-Type`` and ``X-Filename``;
  answers 2xx (``{"duplicate": true}`` for a key seen before).

Requests that fail with 429, a 5xx status, a timeout or a dropped connection are
retried up to ``max_attempts`` times with exponential backoff and full jitter,
waiting at least what ``Retry-After`` asks. Once the budget is spent a
`TransientTransportError` is raised (carrying ``retry_after``). Other 4xx
answers are not retried: `PermanentTransportError`. TLS certificates are
always verified (``ca_bundle`` may name a private CA), and one that fails
verification is a `PermanentTransportError`, never retried; plain ``http`` is
accepted for loopback addresses only. Response bodies are streamed and
abandoned past ``max_response_size``.

Authentication comes from the Airflow connection: extra field ``token``
(sent as a bearer token), else login and password (basic).
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import random
import re
import ssl
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from i2es_hub.connections import ConnectionInfo, get_connection
from i2es_hub.errors import (
    ConfigError,
    PermanentTransportError,
    TransientTransportError,
)
from i2es_hub.transports.base import (
    ConfigReader,
    Fetched,
    OutboundMessage,
    Peer,
    PushResult,
    RemoteFile,
    name_problem,
    peer_from,
)

logger = logging.getLogger(__name__)

_RETRIED_STATUS = frozenset({429, 500, 502, 503, 504})
_ITEM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}")
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


@dataclass(frozen=True)
class RestConfig:
    """Settings of one REST connector.

    Attributes:
        peer: Connector name and country.
        base_url: Root URL of the national system's API (``https://...``).
        conn_id: Airflow connection with the credentials, or None for none.
        pull_path: Path of the list of documents waiting for the hub.
        ack_path: Path where taken documents are acknowledged.
        push_path: Path where the hub posts messages.
        page_size: Items asked for per listing page.
        timeout: Seconds allowed for each read or write on the socket.
        connect_timeout: Seconds allowed to connect.
        max_attempts: Tries per request, the first included.
        backoff: Base of the exponential backoff, in seconds.
        max_backoff: Longest single wait, in seconds; a ``Retry-After`` longer
            than this ends the attempts at once.
        max_response_size: Largest response body read, in bytes.
        ca_bundle: PEM file of the CA to trust instead of the system's, or None.
    """

    peer: Peer
    base_url: str
    conn_id: str | None = None
    pull_path: str = "/outgoing"
    ack_path: str = "/outgoing/ack"
    push_path: str = "/incoming"
    page_size: int = 100
    timeout: float = 30.0
    connect_timeout: float = 10.0
    max_attempts: int = 5
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_response_size: int = 50 * 1024 * 1024
    ca_bundle: str | None = None

    KEYS = frozenset(
        {
            "base_url",
            "conn_id",
            "pull_path",
            "ack_path",
            "push_path",
            "page_size",
            "timeout",
            "connect_timeout",
            "max_attempts",
            "backoff",
            "max_backoff",
            "max_response_size",
            "ca_bundle",
        }
    )

    @classmethod
    def from_mapping(
        cls, name: str, country: str, data: Mapping[str, Any]
    ) -> RestConfig:
        """Build the settings from a connector file's ``transport`` mapping.

        Raises:
            ConfigError: A key is unknown, missing or invalid; the message names it.
        """
        reader = ConfigReader(name, data, set(cls.KEYS))
        base_url = reader.text("base_url").rstrip("/")
        parts = urlsplit(base_url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ConfigError(
                f"connector {name!r}: transport key 'base_url' must be an https URL, "
                f"not {base_url!r}"
            )
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
            raise ConfigError(
                f"connector {name!r}: transport key 'base_url' uses plain http to "
                f"{parts.hostname}; use https (http is allowed on loopback only)"
            )
        if parts.username or parts.password:
            raise ConfigError(
                f"connector {name!r}: transport key 'base_url' must not hold "
                "credentials; put them in the Airflow connection named by 'conn_id'"
            )
        paths = {
            key: reader.text(key, default)
            for key, default in (
                ("pull_path", "/outgoing"),
                ("ack_path", "/outgoing/ack"),
                ("push_path", "/incoming"),
            )
        }
        for key, path in paths.items():
            if not path.startswith("/"):
                raise ConfigError(
                    f"connector {name!r}: transport key {key!r} must start with '/'"
                )
        return cls(
            peer=peer_from(name, country),
            base_url=base_url,
            conn_id=reader.optional_text("conn_id"),
            page_size=reader.integer("page_size", 100, minimum=1),
            timeout=reader.number("timeout", 30.0, minimum=0.1),
            connect_timeout=reader.number("connect_timeout", 10.0, minimum=0.1),
            max_attempts=reader.integer("max_attempts", 5, minimum=1),
            backoff=reader.number("backoff", 0.5),
            max_backoff=reader.number("max_backoff", 30.0),
            max_response_size=reader.integer(
                "max_response_size", 50 * 1024 * 1024, minimum=1
            ),
            ca_bundle=reader.optional_text("ca_bundle"),
            **paths,
        )


class _TooLarge(Exception):
    """A response body went past the size cap."""


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    url: str
    retry_after: float | None = None


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a ``Retry-After`` header (seconds or HTTP date) into seconds.

    Returns:
        The wait in seconds (never negative), or None when absent or unreadable.
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class RestTransport:
    """An open session with a national REST system. Obtain it with `open_rest`."""

    def __init__(self, config: RestConfig, client: httpx.Client) -> None:
        self.config = config
        self._client = client

    # --- the request loop -----------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, str | int] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> _Answer:
        """Send one request, retrying what may succeed later.

        Returns:
            The final answer, whose status is below 400 or a 4xx other than 429.

        Raises:
            TransientTransportError: Retries are spent, or the peer asked to
                wait longer than ``max_backoff``.
            PermanentTransportError: The response was larger than the cap.
        """
        config = self.config
        url = f"{config.base_url}{path}"
        for attempt in range(1, config.max_attempts + 1):
            retry_after: float | None = None
            cause: BaseException | None = None
            try:
                answer = self._send(method, path, params, content, headers)
            except _TooLarge as exc:
                raise PermanentTransportError(
                    f"REST {config.peer}: {what}: the answer from {method} {url} is "
                    f"over {config.max_response_size} bytes and was abandoned. Raise "
                    "'max_response_size' in the connector file if it is legitimate."
                ) from exc
            except httpx.TransportError as exc:
                refused = _certificate_refusal(exc)
                if refused is not None:
                    raise PermanentTransportError(
                        f"REST {config.peer}: {what}: {method} {url}: the server's "
                        f"TLS certificate was refused ({refused.verify_message}). "
                        "Not retried: if the country uses a private CA, set "
                        "'ca_bundle' in the connector file to its PEM file; "
                        "otherwise ask the country to fix its certificate."
                    ) from exc
                problem = type(exc).__name__
                cause = exc
            else:
                if answer.status not in _RETRIED_STATUS:
                    return answer
                problem = f"HTTP {answer.status}"
                retry_after = answer.retry_after

            wait = random.uniform(
                0, min(config.max_backoff, config.backoff * 2**attempt)
            )
            if retry_after is not None:
                wait = max(wait, retry_after)
            if attempt == config.max_attempts or wait > config.max_backoff:
                raise TransientTransportError(
                    f"REST {config.peer}: {what}: {method} {url} failed {attempt} "
                    f"time(s), last with {problem}. The hub will retry later; if "
                    "this persists, check that the national system is up.",
                    retry_after=retry_after,
                ) from cause
            logger.warning(
                "REST %s: %s %s answered %s; attempt %d of %d, waiting %.2fs%s",
                config.peer,
                method,
                url,
                problem,
                attempt,
                config.max_attempts,
                wait,
                " (Retry-After)" if retry_after is not None else "",
            )
            time.sleep(wait)
        raise AssertionError("unreachable: the loop returns or raises")

    def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str | int] | None,
        content: bytes | None,
        headers: Mapping[str, str] | None,
    ) -> _Answer:
        cap = self.config.max_response_size
        with self._client.stream(
            method, path, params=params, content=content, headers=headers
        ) as response:
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > cap:
                raise _TooLarge()
            chunks = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > cap:
                    raise _TooLarge()
                chunks.append(chunk)
            return _Answer(
                response.status_code,
                b"".join(chunks),
                str(response.url),
                retry_after_seconds(response.headers.get("retry-after")),
            )

    def _refused(
        self, what: str, method: str, answer: _Answer
    ) -> PermanentTransportError:
        detail = answer.body[:200].decode("utf-8", "replace").strip()
        return PermanentTransportError(
            f"REST {self.config.peer}: {what}: {method} {answer.url} was refused with "
            f"HTTP {answer.status} ({detail or 'no detail'}). Not retried: check the "
            f"credentials in Airflow connection {self.config.conn_id!r} and the "
            "paths in the connector file."
        )

    # --- pull -----------------------------------------------------------------

    def list_ready(self, limit: int | None = None) -> list[RemoteFile]:
        """Page through the documents waiting for the hub, oldest first.

        Raises:
            TransientTransportError: The national system is unavailable.
            PermanentTransportError: It refused the request or answered nonsense.
        """
        config = self.config
        found: list[RemoteFile] = []
        cursor: str | None = None
        while limit is None or len(found) < limit:
            size = (
                config.page_size
                if limit is None
                else min(config.page_size, limit - len(found))
            )
            params: dict[str, str | int] = {"limit": size}
            if cursor is not None:
                params["after"] = cursor
            answer = self._request(
                "GET", config.pull_path, what="listing", params=params
            )
            if answer.status >= 400:
                raise self._refused("listing", "GET", answer)
            items, cursor = self._page(answer)
            found.extend(items)
            if cursor is None or not items:
                break
        logger.info(
            "REST %s: %d documents ready at %s",
            config.peer,
            len(found),
            config.pull_path,
        )
        return found

    def _page(self, answer: _Answer) -> tuple[list[RemoteFile], str | None]:
        try:
            page = json.loads(answer.body)
            items = [
                RemoteFile(
                    name=str(item["filename"]),
                    size=int(item.get("size", 0)),
                    mtime=float(item.get("created", 0)),
                    ref=str(item["id"]),
                )
                for item in page["items"]
            ]
            cursor = page.get("next")
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentTransportError(
                f"REST {self.config.peer}: the listing at {answer.url} is not in the "
                f"expected form ({type(exc).__name__}: {exc}); ask the country to "
                "check its API against the hub's REST protocol."
            ) from exc
        return items, (None if cursor in (None, "") else str(cursor))

    def fetch(self, files: Iterable[RemoteFile]) -> Iterator[Fetched]:
        """Yield the bytes of each document, in order, one `Fetched` per document.

        Raises:
            TransientTransportError: The national system became unavailable.
        """
        taken = refused = size = 0
        for file in files:
            result = self._fetch_one(file)
            if result.ok:
                taken += 1
                size += len(result.data)
            else:
                refused += 1
            yield result
        logger.info(
            "REST %s: fetched %d documents (%d bytes), %d refused",
            self.config.peer,
            taken,
            size,
            refused,
        )

    def _fetch_one(self, file: RemoteFile) -> Fetched:
        problem = name_problem(file.name)
        if problem is None and not _ITEM_ID.fullmatch(file.ref):
            problem = f"its id {file.ref!r} is not a plain identifier"
        if problem is not None:
            return Fetched(
                file,
                error=PermanentTransportError(
                    f"REST {self.config.peer}: refused document {file.name!r} listed "
                    f"at {self.config.base_url}{self.config.pull_path}: {problem}. "
                    "It was not acknowledged; ask the country to correct it."
                ),
            )
        path = f"{self.config.pull_path}/{quote(file.ref, safe='')}"
        try:
            answer = self._request("GET", path, what=f"fetching {file.name}")
        except PermanentTransportError as exc:
            return Fetched(file, error=exc)
        if answer.status >= 400:
            return Fetched(
                file, error=self._refused(f"fetching {file.name}", "GET", answer)
            )
        return Fetched(file, answer.body)

    def archive(self, files: Iterable[RemoteFile]) -> int:
        """Acknowledge committed documents, so they leave the national list.

        Returns:
            How many documents were acknowledged.

        Raises:
            TransientTransportError: The national system is unavailable.
            PermanentTransportError: It refused the acknowledgement.
        """
        ids = [file.ref for file in files if _ITEM_ID.fullmatch(file.ref)]
        done = 0
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            answer = self._request(
                "POST",
                self.config.ack_path,
                what="acknowledging",
                content=json.dumps({"ids": chunk}).encode(),
                headers={"Content-Type": "application/json"},
            )
            if answer.status >= 400:
                raise self._refused("acknowledging", "POST", answer)
            done += _acknowledged(answer, len(chunk))
        logger.info(
            "REST %s: acknowledged %d of %d documents", self.config.peer, done, len(ids)
        )
        return done

    # --- push -----------------------------------------------------------------

    def push(self, messages: Sequence[OutboundMessage]) -> list[PushResult]:
        """Post each message with an ``Idempotency-Key`` header.

        A message the peer refuses (4xx other than 429) gets a `PushResult`
        with a `PermanentTransportError`; the others go on.

        Raises:
            TransientTransportError: The peer stayed unavailable; the outbox
                pushes the rest again later (repeats are harmless).
        """
        url = f"{self.config.base_url}{self.config.push_path}"
        results = []
        for message in messages:
            answer = self._request(
                "POST",
                self.config.push_path,
                what=f"pushing message {message.message_id}",
                content=message.data,
                headers={
                    "Idempotency-Key": message.message_id,
                    "Content-Type": message.content_type,
                    "X-Filename": message.remote_name,
                },
            )
            if answer.status >= 400:
                error = self._refused(
                    f"pushing message {message.message_id}", "POST", answer
                )
                results.append(PushResult(message.message_id, url, error))
                continue
            results.append(
                PushResult(message.message_id, url, duplicate=_is_duplicate(answer))
            )

        failed = sum(1 for result in results if not result.ok)
        logger.info(
            "REST %s: pushed %d messages, %d refused, to %s",
            self.config.peer,
            len(results) - failed,
            failed,
            url,
        )
        return results


def _certificate_refusal(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate check that failed under ``exc``, if that is what failed.

    A certificate that does not verify will not verify on the next attempt
    either: it needs an operator (a CA bundle) or the country (a new certificate).
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _acknowledged(answer: _Answer, asked: int) -> int:
    """Read how many ids the peer newly acknowledged (``asked`` if it won't say)."""
    try:
        return int(json.loads(answer.body)["acknowledged"])
    except (ValueError, KeyError, TypeError):
        return asked


def _is_duplicate(answer: _Answer) -> bool:
    try:
        return bool(json.loads(answer.body).get("duplicate", False))
    except (ValueError, AttributeError):
        return False


def _auth_headers(
    conn: ConnectionInfo | None,
) -> tuple[dict[str, str], httpx.Auth | None]:
    if conn is None:
        return {}, None
    token = conn.extra.get("token")
    if token:
        return {"Authorization": f"Bearer {token}"}, None
    if conn.login and conn.password is not None:
        return {}, httpx.BasicAuth(conn.login, conn.password)
    return {}, None


@contextlib.contextmanager
def open_rest(
    config: RestConfig, connection: ConnectionInfo | None = None
) -> Iterator[RestTransport]:
    """Yield a session with the national REST system named in ``config``.

    Args:
        config: The connector's REST settings.
        connection: The credentials; read from ``config.conn_id`` when None.

    Raises:
        ConfigError: The connection or the CA bundle cannot be used.
    """
    conn = connection
    if conn is None and config.conn_id is not None:
        conn = get_connection(config.conn_id)
    headers, auth = _auth_headers(conn)

    verify: ssl.SSLContext | bool = True
    if config.ca_bundle is not None:
        try:
            verify = ssl.create_default_context(cafile=config.ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"connector {config.peer}: transport key 'ca_bundle' "
                f"({config.ca_bundle}) is not a readable PEM file of certificates"
            ) from exc

    timeout = httpx.Timeout(config.timeout, connect=config.connect_timeout)
    with httpx.Client(
        base_url=config.base_url,
        headers={"User-Agent": "i2es-hub", **headers},
        auth=auth,
        timeout=timeout,
        verify=verify,
        follow_redirects=False,
    ) as client:
        yield RestTransport(config, client)


__all__ = ["RestConfig", "RestTransport", "open_rest", "retry_after_seconds"]
