"""Bearer-token authentication: every request acts for one country.

The token's country is the only identity the API knows. It is the sender of
everything the caller uploads, and the only recipient whose inbox it may read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from i2es_hub import store, tokens
from i2es_hub.api.errors import ApiError

log = logging.getLogger(__name__)

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="CountryToken",
    description="A country's API token from 'i2es-hub tokens create --country CC'.",
)

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="i2es-hub"'}
_GET_TOKEN = (
    "ask the hub operator for a token ('i2es-hub tokens create --country CC') and "
    "send it as 'Authorization: Bearer <token>'"
)


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated country behind a request.

    Attributes:
        country: ISO 3166-1 alpha-2 code of the caller's country.
        token_id: The id of the token used (never the token itself).
    """

    country: str
    token_id: str


def _unauthorized(message: str, action: str) -> ApiError:
    return ApiError(401, "UNAUTHORIZED", message, action, headers=_CHALLENGE)


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """Authenticate the request's bearer token (a FastAPI dependency).

    Raises:
        ApiError: 401 when the token is missing, unknown or revoked.
    """
    if credentials is None or not credentials.credentials:
        raise _unauthorized("no bearer token in the Authorization header", _GET_TOKEN)
    engine = request.app.state.engine
    with store.read_transaction(engine) as conn:
        info = tokens.lookup(conn, credentials.credentials)
    if info is None:
        raise _unauthorized(
            "the bearer token is not known to this hub (mistyped, or from another hub)",
            _GET_TOKEN,
        )
    if info.revoked:
        log.warning("request with revoked token %s of %s", info.id, info.country)
        raise _unauthorized(
            f"the bearer token {info.id} of {info.country} was revoked",
            "ask the hub operator for a new token "
            "('i2es-hub tokens create --country " + info.country + "')",
        )
    return Caller(info.country, info.id)


CallerDep = Annotated[Caller, Depends(caller)]
