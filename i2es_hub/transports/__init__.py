"""Transports: how bytes move between the hub and a national system.

Three transports share one interface (`Transport`, see `transports.base`):
SFTP (`SftpConfig`), file drop (`FileDropConfig`) and REST (`RestConfig`).
Open a session with `open_transport`::

    with open_transport(config) as transport:
        files = transport.list_ready(limit=500)
        for fetched in transport.fetch(files):
            ...  # ingest and commit
        transport.archive(committed)
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

from i2es_hub.connections import ConnectionInfo
from i2es_hub.errors import ConfigError
from i2es_hub.transports.base import (
    Fetched,
    InboxRules,
    OutboundMessage,
    Peer,
    PushResult,
    RemoteFile,
    Transport,
    name_problem,
)
from i2es_hub.transports.filedrop import FileDropConfig, open_filedrop
from i2es_hub.transports.rest import RestConfig, open_rest
from i2es_hub.transports.sftp import SftpConfig, open_sftp

TransportConfig = SftpConfig | FileDropConfig | RestConfig

_KINDS: dict[str, type[SftpConfig] | type[FileDropConfig] | type[RestConfig]] = {
    "sftp": SftpConfig,
    "filedrop": FileDropConfig,
    "rest": RestConfig,
}


def transport_config(
    name: str, country: str, data: Mapping[str, Any]
) -> TransportConfig:
    """Build a transport's settings from a connector file's ``transport`` mapping.

    The mapping's ``type`` key (``sftp``, ``filedrop`` or ``rest``) picks the
    transport; the other keys are that transport's settings.

    Raises:
        ConfigError: The type or a setting is invalid; the message names the key.
    """
    kind = data.get("type")
    if kind not in _KINDS:
        raise ConfigError(
            f"connector {name!r}: transport key 'type' must be one of "
            f"{sorted(_KINDS)}, not {kind!r}"
        )
    settings = {key: value for key, value in data.items() if key != "type"}
    return _KINDS[kind].from_mapping(name, country, settings)


def open_transport(
    config: TransportConfig, connection: ConnectionInfo | None = None
) -> AbstractContextManager[Transport]:
    """Open a session for any transport; use it as a context manager.

    Args:
        config: The transport's settings.
        connection: Credentials to use instead of looking up ``config.conn_id``
            (ignored by the file drop, which has none).
    """
    if isinstance(config, SftpConfig):
        return open_sftp(config, connection)
    if isinstance(config, RestConfig):
        return open_rest(config, connection)
    return open_filedrop(config)


__all__ = [
    "FileDropConfig",
    "Fetched",
    "InboxRules",
    "OutboundMessage",
    "Peer",
    "PushResult",
    "RemoteFile",
    "RestConfig",
    "SftpConfig",
    "Transport",
    "TransportConfig",
    "name_problem",
    "open_transport",
    "transport_config",
]
