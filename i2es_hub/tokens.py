"""Per-country API tokens: created once, stored hashed, revocable.

A token is a random string shown to the operator exactly once, when it is
created. The hub keeps only its SHA-256 hash, so a copy of the database does not
give access to the API, and a lost token cannot be recovered: revoke it and create
a new one. Tokens never appear in logs, exceptions or reprs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from i2es_hub import store
from i2es_hub.errors import ConfigError, ConflictError

log = logging.getLogger(__name__)

PREFIX = "i2es_"
_COUNTRY = re.compile(r"^[A-Z]{2}$")


def hash_token(token: str) -> str:
    """The stored form of a token: its SHA-256 hex digest."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Secret(str):
    """A string that keeps itself out of reprs and tracebacks."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret('***')"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """One stored token, without the token itself.

    Attributes:
        id: The token's id (what ``tokens revoke`` takes).
        country: The country whose documents the token reaches.
        label: A free note for operators (which system holds it).
        created_at: When it was created (UTC).
        revoked_at: When it was revoked, or None while it is valid.
    """

    id: str
    country: str
    label: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @property
    def revoked(self) -> bool:
        """True once the token may no longer be used."""
        return self.revoked_at is not None

    def to_json(self) -> dict[str, Any]:
        """The JSON form used by ``tokens list --json``."""
        return {
            "id": self.id,
            "country": self.country,
            "label": self.label,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


@dataclass(frozen=True, slots=True)
class NewToken:
    """A token just created: the only moment the token itself is known.

    Attributes:
        info: What is stored about it.
        token: The bearer token to hand to the national system (masked in reprs).
    """

    info: TokenInfo
    token: Secret


def _info(row: Any) -> TokenInfo:
    return TokenInfo(
        row.id, row.country, row.label or "", row.created_at, row.revoked_at
    )


def normalize_country(country: str) -> str:
    """Upper-case an ISO 3166-1 alpha-2 code, or raise ConfigError."""
    code = country.strip().upper()
    if not _COUNTRY.match(code):
        raise ConfigError(
            f"country {country!r} is not an ISO 3166-1 alpha-2 code; "
            "give two letters, for example KE or DE"
        )
    return code


def create(conn: Connection, country: str, label: str = "") -> NewToken:
    """Create a token for ``country`` and store its hash.

    Raises:
        ConfigError: ``country`` is not a two-letter code, or the label is too long.
    """
    code = normalize_country(country)
    if len(label) > 128:
        raise ConfigError(f"label is {len(label)} characters; keep it to 128")
    token = Secret(PREFIX + secrets.token_urlsafe(32))
    info = TokenInfo(store.new_id(), code, label, store.utcnow(), None)
    conn.execute(
        store.api_tokens.insert(),
        [
            {
                "id": info.id,
                "country": code,
                "token_hash": hash_token(token),
                "label": label,
                "created_at": info.created_at,
                "revoked_at": None,
            }
        ],
    )
    log.info("API token %s created for %s", info.id, code)
    return NewToken(info, token)


def revoke(conn: Connection, token_id: str) -> TokenInfo:
    """Revoke a token by id; revoking twice keeps the first time.

    Raises:
        ConflictError: no token has that id.
    """
    t = store.api_tokens
    row = conn.execute(select(t).where(t.c.id == token_id)).first()
    if row is None:
        raise ConflictError(
            f"no API token with id {token_id!r}; see 'i2es-hub tokens list' for ids"
        )
    if row.revoked_at is None:
        now = store.utcnow()
        conn.execute(t.update().where(t.c.id == token_id).values(revoked_at=now))
        log.info("API token %s of %s revoked", token_id, row.country)
        return TokenInfo(row.id, row.country, row.label or "", row.created_at, now)
    return _info(row)


def list_tokens(conn: Connection, country: str | None = None) -> list[TokenInfo]:
    """Every token (never the token itself), oldest first."""
    t = store.api_tokens
    query = select(t).order_by(t.c.created_at, t.c.id)
    if country:
        query = query.where(t.c.country == normalize_country(country))
    return [_info(r) for r in conn.execute(query)]


def lookup(conn: Connection, token: str) -> TokenInfo | None:
    """The stored token matching ``token`` (revoked or not), or None."""
    t = store.api_tokens
    row = conn.execute(select(t).where(t.c.token_hash == hash_token(token))).first()
    return _info(row) if row else None


__all__ = [
    "NewToken",
    "Secret",
    "TokenInfo",
    "create",
    "hash_token",
    "list_tokens",
    "lookup",
    "normalize_country",
    "revoke",
]
