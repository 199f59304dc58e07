"""Credentials for peers, read from Airflow connections.

Connector files never hold secrets: they name an Airflow connection id, and this
module resolves it. The ``AIRFLOW_CONN_<ID>`` environment variable is read first,
in either of Airflow's two forms, so the hub works from the CLI and tests without
importing Airflow:

* URI: ``sftp://login:password@host:2222?host_key=ssh-ed25519%20AAAA...``
  (URL-encoded; query parameters become extra fields, and a ``__extra__``
  parameter may carry the extra fields as JSON);
* JSON: ``{"conn_type": "sftp", "host": ..., "port": ..., "login": ...,
  "password": ..., "extra": {...}}``.

Only when the variable is absent does it ask Airflow itself
(``airflow.sdk.Connection.get``), which works inside a running task.

The password and secret extra fields (keys, passphrases, tokens) are masked in
``repr`` and ``str`` so a connection can be logged or shown in an error safely.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from i2es_hub.errors import ConfigError

logger = logging.getLogger(__name__)

_MASK = "***"

#: Extra fields whose value is a secret: never shown in reprs or messages.
SECRET_EXTRA_FIELDS = frozenset(
    {
        "private_key",
        "private_key_passphrase",
        "key_file_passphrase",
        "token",
        "api_key",
        "client_secret",
        "secret",
        "passphrase",
    }
)


def _is_secret_field(name: str) -> bool:
    lowered = name.lower()
    return lowered in SECRET_EXTRA_FIELDS or any(
        word in lowered for word in ("password", "secret", "token", "private")
    )


@dataclass(frozen=True)
class ConnectionInfo:
    """What the hub needs to reach one peer.

    Attributes:
        conn_id: The Airflow connection id it was read from.
        conn_type: Airflow connection type, for example ``sftp`` or ``http``.
        host: Host name or address.
        port: TCP port, or None for the protocol's default.
        login: User name, or None.
        password: Password, or None. Masked in ``repr``.
        extra: Extra fields (``host_key``, ``private_key``...). Secret ones are
            masked in ``repr``.
    """

    conn_id: str
    conn_type: str
    host: str
    port: int | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def masked_extra(self) -> dict[str, Any]:
        """Return the extra fields with every secret value replaced by ``***``."""
        return {
            key: (_MASK if _is_secret_field(key) else value)
            for key, value in self.extra.items()
        }

    def __repr__(self) -> str:
        password = None if self.password is None else _MASK
        return (
            f"ConnectionInfo(conn_id={self.conn_id!r}, conn_type={self.conn_type!r}, "
            f"host={self.host!r}, port={self.port!r}, login={self.login!r}, "
            f"password={password!r}, extra={self.masked_extra()!r})"
        )

    __str__ = __repr__


def env_var_name(conn_id: str) -> str:
    """Return the environment variable Airflow reads for ``conn_id``."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def get_connection(conn_id: str) -> ConnectionInfo:
    """Resolve an Airflow connection id into a `ConnectionInfo`.

    Args:
        conn_id: The connection id named in a connector file.

    Returns:
        The parsed connection.

    Raises:
        ConfigError: The connection is not defined anywhere, or its definition
            cannot be parsed. The message names the variable to set.
    """
    variable = env_var_name(conn_id)
    raw = os.environ.get(variable)
    if raw is not None:
        return parse_connection(conn_id, raw, source=variable)

    found = _from_airflow(conn_id)
    if found is not None:
        return found
    raise ConfigError(
        f"Airflow connection {conn_id!r} is not defined: set the environment "
        f"variable {variable} (URI form such as 'sftp://user@host:22?host_key=...' "
        f"or a JSON object), or create the connection in Airflow "
        f"(Admin > Connections or 'airflow connections add {conn_id} ...')."
    )


def parse_connection(conn_id: str, raw: str, *, source: str = "") -> ConnectionInfo:
    """Parse a connection in Airflow's URI or JSON form.

    Args:
        conn_id: The connection id, used in the result and in error messages.
        raw: The URI or JSON text.
        source: Where the text came from, for error messages.

    Returns:
        The parsed connection.

    Raises:
        ConfigError: The text is neither a valid URI nor valid JSON. The message
            never repeats the text, which holds secrets.
    """
    where = source or f"connection {conn_id!r}"
    text = raw.strip()
    if text.startswith("{"):
        return _parse_json(conn_id, text, where)
    return _parse_uri(conn_id, text, where)


def _parse_json(conn_id: str, text: str, where: str) -> ConnectionInfo:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{where}: not valid JSON (line {exc.lineno}, column {exc.colno}); "
            "fix the connection definition"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the JSON form must be an object")

    extra = data.get("extra") or {}
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except json.JSONDecodeError:
            raise ConfigError(
                f"{where}: 'extra' is a string that is not a JSON object"
            ) from None
    if not isinstance(extra, dict):
        raise ConfigError(f"{where}: 'extra' must be a JSON object")

    conn_type = data.get("conn_type")
    if not conn_type:
        raise ConfigError(f"{where}: 'conn_type' is missing")
    return ConnectionInfo(
        conn_id=conn_id,
        conn_type=str(conn_type),
        host=str(data.get("host") or ""),
        port=_port(data.get("port"), where),
        login=data.get("login"),
        password=data.get("password"),
        extra=extra,
    )


def _parse_uri(conn_id: str, text: str, where: str) -> ConnectionInfo:
    parts = urlsplit(text)
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.\-_]*", parts.scheme or ""):
        raise ConfigError(
            f"{where}: expected a URI such as 'sftp://user@host:22' or a JSON object"
        )
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{where}: the port is not a number") from None

    extra: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "__extra__":
            try:
                loaded = json.loads(value)
            except json.JSONDecodeError:
                raise ConfigError(f"{where}: '__extra__' is not valid JSON") from None
            if not isinstance(loaded, dict):
                raise ConfigError(f"{where}: '__extra__' must be a JSON object")
            extra.update(loaded)
        else:
            extra[key] = value

    return ConnectionInfo(
        conn_id=conn_id,
        conn_type=parts.scheme.replace("-", "_"),
        host=unquote(parts.hostname or ""),
        port=port,
        login=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        extra=extra,
    )


def _port(value: Any, where: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: 'port' is not a number") from None


def _from_airflow(conn_id: str) -> ConnectionInfo | None:
    """Ask Airflow for the connection; None when Airflow is absent or says no."""
    try:
        from airflow.sdk import Connection  # slow import: only when needed
    except ImportError:
        logger.debug("Airflow is not installed; connection %s not looked up", conn_id)
        return None

    try:
        conn = Connection.get(conn_id)
    except Exception as exc:  # Airflow raises many kinds of error here
        # Outside a running task the SDK has no supervisor to ask; that is the
        # same as "not defined" for us, but say why at DEBUG.
        logger.debug(
            "Airflow could not give connection %s: %s", conn_id, type(exc).__name__
        )
        return None
    if conn is None:
        return None

    extra = conn.extra_dejson if conn.extra else {}
    return ConnectionInfo(
        conn_id=conn_id,
        conn_type=str(conn.conn_type or ""),
        host=str(conn.host or ""),
        port=conn.port,
        login=conn.login,
        password=conn.password,
        extra=dict(extra),
    )


__all__ = [
    "SECRET_EXTRA_FIELDS",
    "ConnectionInfo",
    "env_var_name",
    "get_connection",
    "parse_connection",
]
