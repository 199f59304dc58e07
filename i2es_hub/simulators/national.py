"""Sample national systems for the three sample countries, on loopback.

Each runs behind its real transport, built on the simulators beside this module:

* Kenya (``ke-ppb``): PPB e-Permit XML, one document per file, over SFTP
  (OpenSSH's sshd when installed, else the in-process server);
* Germany (``de-bfarm``): BtM-Aussenhandel batch files in a drop folder;
* Switzerland (``ch-swissmedic``): JSON documents over the simulated REST API.

`national_system` starts one and yields a `NationalSystem`: the connector (the
sample file from connectors/, with its transport pointed at the simulator and
written to a work folder), the credentials, ``send`` to leave a file for the
hub, and ``received`` to read what the hub delivered. `generate` writes
plausible national documents in volume by rendering canonical import
authorizations through the country's outbound mapping.

Example::

    with national_system("ke-ppb", tmp) as kenya:
        kenya.send("KE-IA-1.xml", sample("ke-ppb", "import-authorization.xml"))
        pull(kenya.connector, engine, connection=kenya.connection)
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from lxml import etree

from i2es_hub import canonical
from i2es_hub.connections import ConnectionInfo, env_var_name, parse_connection
from i2es_hub.connectors import Connector, connectors_dir, load_connector
from i2es_hub.mapping import compile_mapping, mappings_dir
from i2es_hub.simulators.rest_server import rest_server
from i2es_hub.simulators.sftp_server import sftp_server

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
_TEMPORARY = (".", "~")


@dataclass
class NationalSystem:
    """A running sample national system and the connector that reaches it.

    Attributes:
        connector: The connector, its transport pointed at this system.
        connection: The credentials the hub uses, or None (file drop).
        send: Leave ``(name, bytes)`` for the hub to pull.
        received: What the hub has delivered so far, as ``(name, bytes)``.
        env: The ``AIRFLOW_CONN_<ID>`` variable that reaches it, for the CLI.
    """

    connector: Connector
    connection: ConnectionInfo | None
    send: Callable[[str, bytes], None]
    received: Callable[[], list[tuple[str, bytes]]]
    env: dict[str, str] = field(default_factory=dict, repr=False)


def sample(connector: str, name: str) -> bytes:
    """A national-format sample from ``mappings/<country>/samples/``."""
    country = connector.split("-")[0]
    return (mappings_dir() / country / "samples" / name).read_bytes()


@contextlib.contextmanager
def national_system(
    name: str, workdir: Path, *, sftp_kind: str = "auto"
) -> Iterator[NationalSystem]:
    """Run the sample national system behind connector ``name``.

    Args:
        name: ``ke-ppb``, ``de-bfarm``, ``ch-swissmedic`` or another connector
            whose transport type is one of sftp, filedrop and rest.
        workdir: A folder for the system's files and the rewritten connector.
        sftp_kind: ``auto``, ``openssh`` or ``inprocess`` for SFTP systems.
    """
    source = connectors_dir() / f"{name}.yaml"
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    transport = data["transport"]
    folder = workdir / "connectors"
    folder.mkdir(parents=True, exist_ok=True)

    def connector_with(settings: dict[str, Any]) -> Connector:
        rewritten = copy.deepcopy(data)
        rewritten["transport"] = {**transport, **settings}
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(rewritten, sort_keys=False), encoding="utf-8")
        return load_connector(path)

    if transport["type"] == "rest":
        token = secrets.token_urlsafe(16)
        with rest_server(token=token) as system:
            value = json.dumps({"conn_type": "http", "extra": {"token": token}})
            connection = parse_connection(data["connection_id"], value)

            def rest_received() -> list[tuple[str, bytes]]:
                return [(p.filename, p.body) for p in system.pushed]

            def rest_send(name: str, body: bytes) -> None:
                system.add_outgoing(name, body, "application/json")

            yield NationalSystem(
                connector_with({"base_url": system.base_url}),
                connection,
                rest_send,
                rest_received,
                {env_var_name(data["connection_id"]): value},
            )
        return

    folders = {"inbox": "inbox", "outbox": "outbox", "archive_dir": "inbox/archive"}
    if transport["type"] == "filedrop":
        root = workdir / "drop"
        for sub in folders.values():
            (root / sub).mkdir(parents=True, exist_ok=True)
        settings = {k: str(root / v) for k, v in folders.items()}
        yield NationalSystem(
            connector_with({**settings, "min_age": 0}),
            None,
            _dropper(root / "inbox"),
            _collector(root / "outbox"),
        )
        return

    with sftp_server(sftp_kind, workdir / "sftp") as server:
        for sub in folders.values():
            (server.root / sub).mkdir(parents=True, exist_ok=True)
        uri = server.connection_uri()
        yield NationalSystem(
            connector_with({**folders, "min_age": 0}),
            parse_connection(data["connection_id"], uri),
            _dropper(server.root / "inbox"),
            _collector(server.root / "outbox"),
            {env_var_name(data["connection_id"]): uri},
        )


def _dropper(inbox: Path) -> Callable[[str, bytes], None]:
    def send(name: str, data: bytes) -> None:
        # Written under a temporary name, then renamed, like a careful sender.
        temporary = inbox / f".{name}.part"
        temporary.write_bytes(data)
        past = time.time() - 3600
        os.utime(temporary, (past, past))
        temporary.rename(inbox / name)

    return send


def _collector(outbox: Path) -> Callable[[], list[tuple[str, bytes]]]:
    def received() -> list[tuple[str, bytes]]:
        return [
            (p.name, p.read_bytes())
            for p in sorted(outbox.iterdir())
            if p.is_file() and not p.name.startswith(_TEMPORARY)
        ]

    return received


def generate(
    connector: Connector, count: int, *, start: int = 1, per_file: int = 1
) -> list[tuple[str, bytes]]:
    """Plausible national import authorizations, as files ready to send.

    Each is the example import authorization re-issued by the connector's
    country with its own number and quantity, rendered through the connector's
    outbound mapping, so it is exactly what the national format looks like.

    Args:
        connector: Whose country and format to use.
        count: How many documents.
        start: The first serial number.
        per_file: Documents per file, for batch formats (XML root repeated
            children); formats with one document per file must use 1.
    """
    mapping = compile_mapping(connector.mapping)
    template = etree.parse(str(EXAMPLES / "import-authorization.xml")).getroot()
    year = dt.date.fromisoformat(template.findtext(canonical.q("IssueDate")) or "").year
    rendered = []
    for serial in range(start, start + count):
        doc = copy.deepcopy(template)
        number = f"{connector.country}-IA-{year}-{serial:06d}"
        doc.find(canonical.q("DocumentNumber")).text = number
        doc.find(canonical.q("IssuingCountry")).text = connector.country
        doc.find(canonical.q("IssuingAuthority")).text = connector.authority
        importer = doc.find(f"{canonical.q('Importer')}/{canonical.q('Address')}")
        importer.find(canonical.q("Country")).text = connector.country
        quantity = doc.find(f".//{canonical.q('Quantity')}")
        quantity.text = str(Decimal(10 + serial % 990))
        rendered.append((number, mapping.to_national(etree.tostring(doc))))
    suffix = ".json" if mapping.format == "json" else ".xml"
    pattern = getattr(getattr(connector.transport, "rules", None), "pattern", "*")
    if pattern.count("*") != 1 or any(c in pattern for c in "?["):
        pattern = "*" + suffix

    def file_name(stem: str) -> str:
        return pattern.replace("*", stem.removesuffix(suffix))

    if per_file == 1 or mapping.format == "json":
        return [(file_name(number), data) for number, data in rendered]
    files = []
    for first in range(0, len(rendered), per_file):
        chunk = rendered[first : first + per_file]
        root = etree.fromstring(chunk[0][1])
        for _, data in chunk[1:]:
            root.extend(list(etree.fromstring(data)))
        files.append(
            (
                file_name(f"{chunk[0][0]}-batch"),
                etree.tostring(root, xml_declaration=True, encoding="UTF-8"),
            )
        )
    return files


__all__ = ["NationalSystem", "generate", "national_system", "sample"]
