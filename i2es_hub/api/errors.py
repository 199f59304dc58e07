"""Error answers: every one says what failed, where, and what to do.

The body of every 4xx and 5xx answer has the same shape::

    {"error": {"status": 403, "code": "FORBIDDEN", "message": "...",
               "where": "POST /v1/documents", "action": "..."}}

and, when a document was examined, ``"result"`` with the per-document outcome and
findings (the same form as a successful answer).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from i2es_hub.errors import AccessDenied, ConfigError, ConflictError, HubError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An answer other than success, raised from a route.

    Attributes:
        status: The HTTP status code.
        code: A stable, upper-case reason code.
        message: What failed, naming the document or resource.
        action: What the caller should do about it.
        result: The per-document result, when a document was examined.
        headers: Extra response headers (``WWW-Authenticate`` on 401).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        action: str,
        *,
        result: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.action = action
        self.result = result
        self.headers = headers


def where(request: Request) -> str:
    """The method and path of a request, for error bodies (no query: it may leak)."""
    return f"{request.method} {request.url.path}"


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    action: str,
    *,
    result: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The JSON answer for an error."""
    body: dict[str, Any] = {
        "error": {
            "status": status,
            "code": code,
            "message": message,
            "where": where(request),
            "action": action,
        }
    }
    if result is not None:
        body["result"] = result
    return JSONResponse(body, status_code=status, headers=headers)


_HTTP_ACTIONS = {
    404: ("NOT_FOUND", "check the path against /v1/openapi.json"),
    405: (
        "METHOD_NOT_ALLOWED",
        "use a method listed in /v1/openapi.json for this path",
    ),
}


def install(app: FastAPI) -> None:
    """Register handlers that give every error the common body."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(
            request,
            exc.status,
            exc.code,
            exc.message,
            exc.action,
            result=exc.result,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()))
            problems.append(f"{loc}: {err.get('msg', 'invalid')}")
        return error_response(
            request,
            422,
            "INVALID_REQUEST",
            "the request's parameters are invalid: " + "; ".join(problems),
            "correct the named parameters (see /v1/openapi.json) and send again",
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, action = _HTTP_ACTIONS.get(
            exc.status_code, ("HTTP_ERROR", "see /v1/openapi.json")
        )
        return error_response(
            request,
            exc.status_code,
            code,
            f"{where(request)}: {exc.detail}",
            action,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(AccessDenied)
    async def _denied(request: Request, exc: AccessDenied) -> JSONResponse:
        return error_response(
            request,
            403,
            "FORBIDDEN",
            str(exc),
            "use the token of the country concerned",
        )

    @app.exception_handler(ConflictError)
    async def _conflict(request: Request, exc: ConflictError) -> JSONResponse:
        return error_response(
            request,
            409,
            "CONFLICT",
            str(exc),
            "read the current state and retry with a request that fits it",
        )

    @app.exception_handler(HubError)
    async def _hub(request: Request, exc: HubError) -> JSONResponse:
        log.error("%s failed: %s", where(request), exc)
        config = isinstance(exc, ConfigError)
        return error_response(
            request,
            503 if config else 500,
            "HUB_MISCONFIGURED" if config else "HUB_ERROR",
            f"the hub could not serve {where(request)}: {exc}",
            "retry later; if it persists, tell the hub operator",
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s failed unexpectedly", where(request), exc_info=exc)
        return error_response(
            request,
            500,
            "INTERNAL_ERROR",
            f"the hub failed while serving {where(request)}; the error is logged",
            "retry later; if it persists, tell the hub operator the time of the "
            "request",
        )
