"""Connector files: one YAML file per country, loaded into frozen, checked values.

A connector file ``connectors/<name>.yaml`` says how the hub exchanges documents
with one country's national system::

    country: KE                       # ISO 3166-1 alpha-2; the only issuer accepted
    authority: Pharmacy and Poisons Board
    connection_id: ke_ppb_sftp        # Airflow connection with the credentials
    transport:                        # settings as the transport takes them
      type: sftp                      # sftp | filedrop | rest
      inbox: /outgoing/to-hub
      ...
    mapping:                          # paths under mappings/
      inbound: ke/inbound.xslt
      outbound: ke/outbound.xslt
      codes: ke/codes
    national_schema: ke-ppb-epermit-2.xsd   # optional, under xsd/national/
    outbound_name: "PPB-{message_id}.xml"   # optional
    schedule: "*/5 * * * *"           # cron or a preset such as @hourly
    policy:
      hold: [EXCESS_ESTIMATE]         # warnings that hold this country's documents
    batch_size: 200                   # files per pull, documents per commit

Credentials never appear in the file: ``connection_id`` names an Airflow
connection (``AIRFLOW_CONN_<ID>`` works without a scheduler). A file that is
wrong fails at load with its path, the key and the reason (`ConfigError`).
``connector_schema()`` gives the file's JSON Schema for editors.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from i2es_hub.errors import ConfigError
from i2es_hub.findings import SEVERITY, Code, Severity
from i2es_hub.mapping import (
    MappingSpec,
    mappings_dir,
    national_xsd_dir,
    resolve_inside,
)
from i2es_hub.policy import Policy
from i2es_hub.transports import TransportConfig, transport_config

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BATCH_SIZE = 200
MAX_BATCH_SIZE = 10_000
PRESETS = ("@once", "@hourly", "@daily", "@weekly", "@monthly", "@yearly")
TRANSPORT_TYPES = ("sftp", "filedrop", "rest")

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_CRON_FIELD = re.compile(r"(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*")
_CONN_ID = re.compile(r"[A-Za-z0-9_.-]{1,250}")
_PLACEHOLDERS = {"message_id", "kind", "country"}
_SECRET_WORDS = ("password", "secret", "token", "private_key", "passphrase")
_KEYS = {
    "country": True,
    "authority": True,
    "transport": True,
    "mapping": True,
    "connection_id": False,
    "national_schema": False,
    "outbound_name": False,
    "schedule": False,
    "policy": False,
    "batch_size": False,
    "description": False,
}


@dataclass(frozen=True)
class Connector:
    """A loaded connector file.

    Attributes:
        name: The file name without ``.yaml``; also the channel name in the audit.
        path: The file it was loaded from.
        country: The country this connector speaks for: the only issuer whose
            documents it may submit, and the recipient whose deliveries it pushes.
        authority: The competent national authority, for messages and reports.
        transport: The transport's checked settings.
        connection_id: The Airflow connection holding the credentials, or None.
        mapping: Where the mapping files are.
        outbound_name: File name pattern for pushed messages.
        schedule: Cron expression or preset for the generated DAG.
        policy: Warnings that hold this country's documents.
        batch_size: Files taken per pull and documents per commit; deliveries
            per push.
    """

    name: str
    path: Path
    country: str
    authority: str
    transport: TransportConfig
    connection_id: str | None
    mapping: MappingSpec
    outbound_name: str
    schedule: str
    policy: Policy
    batch_size: int

    @property
    def transport_type(self) -> str:
        """``sftp``, ``filedrop`` or ``rest``."""
        return type(self.transport).__name__.removesuffix("Config").lower()

    def outbound_filename(self, message_id: str, kind: str) -> str:
        """The file name a pushed message gets at the national system."""
        return self.outbound_name.format(
            message_id=message_id, kind=kind, country=self.country
        )


def connectors_dir() -> Path:
    """The folder of connector files: ``$I2ES_HUB_CONNECTORS_DIR`` or connectors/."""
    return Path(os.environ.get("I2ES_HUB_CONNECTORS_DIR", REPO_ROOT / "connectors"))


class _Reader:
    """Reads keys of one connector file; every error names file, key and reason."""

    def __init__(self, path: Path, data: Mapping[str, Any]) -> None:
        self.path = path
        self.data = data

    def fail(self, key: str, reason: str) -> ConfigError:
        return ConfigError(f"{self.path}: key {key!r} {reason}")

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if value is None:
            raise self.fail(key, "is required")
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string, not {value!r}")
        return value.strip()


def load_connector(path: Path | str) -> Connector:
    """Load and check one connector file.

    Raises:
        ConfigError: The file is unreadable or wrong; the message gives the file,
            the key and the reason.
    """
    path = Path(path)
    name = path.stem
    if path.suffix != ".yaml" or not _NAME.fullmatch(name):
        raise ConfigError(
            f"{path}: a connector file is named <name>.yaml, the name in lower-case "
            "letters, digits, '-' and '_' (for example ke-ppb.yaml)"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a YAML mapping of keys to values")

    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {unknown}; allowed keys are {sorted(_KEYS)}"
        )
    missing = sorted(k for k, required in _KEYS.items() if required and k not in data)
    if missing:
        raise ConfigError(f"{path}: key(s) {missing} are required")

    read = _Reader(path, data)
    country = read.text("country")
    if not re.fullmatch(r"[A-Z]{2}", country):
        raise read.fail(
            "country", f"must be an ISO 3166-1 alpha-2 code, not {country!r}"
        )
    connection_id = _connection_id(read)
    transport = _transport(read, name, country, connection_id)
    return Connector(
        name=name,
        path=path,
        country=country,
        authority=read.text("authority"),
        transport=transport,
        connection_id=connection_id,
        mapping=_mapping(read),
        outbound_name=_outbound_name(read),
        schedule=_schedule(read),
        policy=_policy(read, country),
        batch_size=_batch_size(read),
    )


def load_connectors(folder: Path | str | None = None) -> dict[str, Connector]:
    """Load every ``*.yaml`` file of a folder, by connector name.

    Raises:
        ConfigError: A file is wrong, something other than connector files is in
            the folder, or two connectors speak for the same country.
    """
    folder = Path(folder) if folder is not None else connectors_dir()
    if not folder.is_dir():
        raise ConfigError(f"connector folder {folder} does not exist")
    connectors: dict[str, Connector] = {}
    by_country: dict[str, str] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.suffix != ".yaml" or not path.is_file():
            raise ConfigError(
                f"{path}: only connector files (<name>.yaml) belong in {folder}; a "
                "DAG is generated for each file there"
            )
        connector = load_connector(path)
        if connector.country in by_country:
            raise ConfigError(
                f"{path}: country {connector.country} already has connector "
                f"{by_country[connector.country]!r}; one connector per country"
            )
        by_country[connector.country] = connector.name
        connectors[connector.name] = connector
    return connectors


def find_connector(name: str, folder: Path | str | None = None) -> Connector:
    """Load the connector called ``name`` from the folder.

    Raises:
        ConfigError: No such file, or the file is wrong.
    """
    folder = Path(folder) if folder is not None else connectors_dir()
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{name!r} is not a connector name")
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise ConfigError(f"no connector {name!r} in {folder} (known: {known})")
    return load_connector(path)


# ----- the keys ---------------------------------------------------------------------


def _connection_id(read: _Reader) -> str | None:
    if read.data.get("connection_id") is None:
        return None
    value = read.text("connection_id")
    if not _CONN_ID.fullmatch(value):
        raise read.fail(
            "connection_id",
            "must be an Airflow connection id (letters, digits, '_', '-', '.'); "
            "credentials go in that connection, never in this file",
        )
    return value


def _transport(
    read: _Reader, name: str, country: str, connection_id: str | None
) -> TransportConfig:
    data = read.data["transport"]
    if not isinstance(data, dict):
        raise read.fail("transport", "must be a mapping with a 'type' key")
    for key in data:
        if any(word in str(key).lower() for word in _SECRET_WORDS):
            raise read.fail(
                f"transport.{key}",
                "looks like a credential; put it in the Airflow connection named "
                "by 'connection_id'",
            )
    if "conn_id" in data:
        raise read.fail("transport.conn_id", "is set by the top-level 'connection_id'")
    kind = data.get("type")
    if kind not in TRANSPORT_TYPES:
        raise read.fail(
            "transport.type", f"must be one of {list(TRANSPORT_TYPES)}, not {kind!r}"
        )
    settings = dict(data)
    if kind == "sftp" and connection_id is None:
        raise read.fail("connection_id", "is required for an sftp transport")
    if kind == "filedrop" and connection_id is not None:
        raise read.fail("connection_id", "must be left out for a filedrop transport")
    if kind in ("sftp", "rest") and connection_id is not None:
        settings["conn_id"] = connection_id
    try:
        return transport_config(name, country, settings)
    except ConfigError as exc:
        raise ConfigError(f"{read.path}: {exc}") from exc


def _mapping(read: _Reader) -> MappingSpec:
    data = read.data["mapping"]
    if not isinstance(data, dict):
        raise read.fail("mapping", "must be a mapping with inbound, outbound and codes")
    unknown = sorted(set(data) - {"inbound", "outbound", "codes"})
    if unknown:
        raise read.fail("mapping", f"has unknown key(s) {unknown}")
    sub = _Reader(read.path, data)
    spec = MappingSpec(
        inbound=sub.text("inbound"),
        outbound=sub.text("outbound"),
        codes=sub.text("codes"),
        national_schema=(
            read.text("national_schema") if "national_schema" in read.data else None
        ),
    )
    root = mappings_dir()
    for key in ("inbound", "outbound", "codes"):
        try:
            path = resolve_inside(root, getattr(spec, key), f"mapping.{key}")
        except ConfigError as exc:
            raise read.fail(f"mapping.{key}", f"is wrong: {exc}") from exc
        if key != "codes" and path.suffix not in (".xsl", ".xslt", ".yaml", ".yml"):
            raise read.fail(
                f"mapping.{key}", "must name an XSLT (.xslt) or a field map (.yaml)"
            )
    if spec.format == "json" and spec.national_schema:
        raise read.fail("national_schema", "applies to XML formats only")
    if spec.national_schema:
        try:
            resolve_inside(national_xsd_dir(), spec.national_schema, "national_schema")
        except ConfigError as exc:
            raise read.fail("national_schema", f"is wrong: {exc}") from exc
    return spec


def _outbound_name(read: _Reader) -> str:
    pattern = read.text("outbound_name", "{message_id}.xml")
    found = set(re.findall(r"{([^{}]*)}", pattern))
    if "message_id" not in found or not found <= _PLACEHOLDERS:
        raise read.fail(
            "outbound_name",
            f"must contain {{message_id}} and may use only {sorted(_PLACEHOLDERS)}, "
            f"not {pattern!r}",
        )
    if "/" in pattern or "\\" in pattern:
        raise read.fail("outbound_name", "must be a file name, not a path")
    return pattern


def _schedule(read: _Reader) -> str:
    value = read.text("schedule", "@hourly")
    if value in PRESETS:
        return value
    fields = value.split()
    if len(fields) != 5 or not all(_CRON_FIELD.fullmatch(f) for f in fields):
        raise read.fail(
            "schedule",
            f"must be a five-field cron expression such as '*/5 * * * *' or one of "
            f"{list(PRESETS)}, not {value!r}",
        )
    return value


def _policy(read: _Reader, country: str) -> Policy:
    data = read.data.get("policy") or {}
    if not isinstance(data, dict) or set(data) - {"hold"}:
        raise read.fail("policy", "must be a mapping with the one key 'hold'")
    hold = data.get("hold") or []
    if not isinstance(hold, list):
        raise read.fail("policy.hold", "must be a list of warning codes")
    warnings = sorted(c.value for c, s in SEVERITY.items() if s == Severity.WARNING)
    for code in hold:
        if code not in Code.__members__ or code not in warnings:
            raise read.fail(
                "policy.hold",
                f"lists {code!r}, which is not a warning code; use some of {warnings}",
            )
    return Policy(hold={country: frozenset(hold)} if hold else {})


def _batch_size(read: _Reader) -> int:
    value = read.data.get("batch_size", DEFAULT_BATCH_SIZE)
    if isinstance(value, bool) or not isinstance(value, int):
        raise read.fail("batch_size", f"must be a whole number, not {value!r}")
    if not 1 <= value <= MAX_BATCH_SIZE:
        raise read.fail("batch_size", f"must be between 1 and {MAX_BATCH_SIZE}")
    return value


# ----- JSON Schema -------------------------------------------------------------------


def connector_schema() -> dict[str, Any]:
    """The JSON Schema of a connector file, for editors and reviews."""
    text = {"type": "string", "minLength": 1}
    folder = {
        "inbox": {**text, "description": "folder the national system drops into"},
        "outbox": {**text, "description": "folder the hub pushes into"},
        "pattern": {**text, "default": "*.xml"},
        "min_age": {"type": "number", "minimum": 0, "default": 30},
        "after_pull": {"enum": ["archive", "delete"], "default": "archive"},
        "archive_dir": text,
        "max_file_size": {"type": "integer", "minimum": 1},
    }
    sftp = {
        "properties": {
            "type": {"const": "sftp"},
            **folder,
            "connect_timeout": {"type": "number", "minimum": 0.1},
            "timeout": {"type": "number", "minimum": 0.1},
            "workers": {"type": "integer", "minimum": 1},
        },
        "required": ["type", "inbox", "outbox"],
        "additionalProperties": False,
    }
    filedrop = {
        "properties": {"type": {"const": "filedrop"}, **folder},
        "required": ["type", "inbox", "outbox"],
        "additionalProperties": False,
    }
    rest = {
        "properties": {
            "type": {"const": "rest"},
            "base_url": {**text, "pattern": "^https?://"},
            "pull_path": {**text, "pattern": "^/"},
            "ack_path": {**text, "pattern": "^/"},
            "push_path": {**text, "pattern": "^/"},
            "page_size": {"type": "integer", "minimum": 1},
            "timeout": {"type": "number", "minimum": 0.1},
            "connect_timeout": {"type": "number", "minimum": 0.1},
            "max_attempts": {"type": "integer", "minimum": 1},
            "backoff": {"type": "number", "minimum": 0},
            "max_backoff": {"type": "number", "minimum": 0},
            "max_response_size": {"type": "integer", "minimum": 1},
            "ca_bundle": text,
        },
        "required": ["type", "base_url"],
        "additionalProperties": False,
    }
    warnings = sorted(c.value for c, s in SEVERITY.items() if s == Severity.WARNING)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:i2es-hub:connector:1",
        "title": "i2es-hub connector file",
        "type": "object",
        "properties": {
            "description": text,
            "country": {"type": "string", "pattern": "^[A-Z]{2}$"},
            "authority": text,
            "connection_id": {
                "type": "string",
                "pattern": "^[A-Za-z0-9_.-]{1,250}$",
                "description": "Airflow connection id; never credentials",
            },
            "transport": {"oneOf": [sftp, filedrop, rest]},
            "mapping": {
                "type": "object",
                "properties": {"inbound": text, "outbound": text, "codes": text},
                "required": ["inbound", "outbound", "codes"],
                "additionalProperties": False,
            },
            "national_schema": text,
            "outbound_name": {**text, "pattern": "\\{message_id\\}"},
            "schedule": text,
            "policy": {
                "type": "object",
                "properties": {"hold": {"type": "array", "items": {"enum": warnings}}},
                "additionalProperties": False,
            },
            "batch_size": {"type": "integer", "minimum": 1, "maximum": MAX_BATCH_SIZE},
        },
        "required": ["country", "authority", "transport", "mapping"],
        "additionalProperties": False,
    }


__all__ = [
    "Connector",
    "connector_schema",
    "connectors_dir",
    "find_connector",
    "load_connector",
    "load_connectors",
]
