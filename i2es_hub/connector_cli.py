"""Engineer commands for connectors: list, check, schema, mapping test, pull, push.

Imports of the heavy modules happen inside the commands, so ``i2es-hub --help``
stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

_folder = click.option(
    "--folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Connector folder (default: $I2ES_HUB_CONNECTORS_DIR or connectors/).",
)


@click.group("connectors")
def connectors_group() -> None:
    """Connector files: list them, check them against the real endpoint."""


@connectors_group.command("list")
@_folder
def connectors_list(folder: Path | None) -> None:
    """List the connectors: country, transport, mapping and schedule."""
    from i2es_hub.connectors import load_connectors

    for name, c in load_connectors(folder).items():
        click.echo(
            f"{name:<20} {c.country}  {c.transport_type:<9} {c.mapping.format:<5} "
            f"{c.schedule:<14} {c.authority}"
        )


@connectors_group.command("schema")
def connectors_schema() -> None:
    """Print the JSON Schema of a connector file."""
    from i2es_hub.connectors import connector_schema

    click.echo(json.dumps(connector_schema(), indent=2))


@connectors_group.command("check")
@click.argument("name")
@_folder
def connectors_check(name: str, folder: Path | None) -> None:
    """Load NAME, compile its mapping, connect for real and list its inbox."""
    from i2es_hub.connectors import find_connector
    from i2es_hub.errors import HubError
    from i2es_hub.mapping import compile_mapping, iter_tables
    from i2es_hub.transports import open_transport

    connector = find_connector(name, folder)
    click.echo(f"ok    connector file {connector.path}")
    failed = False
    try:
        mapping = compile_mapping(connector.mapping)
        tables = ", ".join(f"{t.name} ({len(t.rows)})" for t in iter_tables(mapping))
        click.echo(
            f"ok    mapping {connector.mapping.inbound} / "
            f"{connector.mapping.outbound}; code tables: {tables}"
        )
        if connector.mapping.national_schema:
            click.echo(f"ok    national schema {connector.mapping.national_schema}")
    except HubError as exc:
        failed = True
        click.echo(f"FAIL  mapping: {exc}")
    try:
        with open_transport(connector.transport) as transport:
            what = "host key verified, " if connector.transport_type == "sftp" else ""
            files = transport.list_ready()
            click.echo(
                f"ok    {connector.transport_type} connection: {what}"
                f"{len(files)} file(s) ready in the inbox"
            )
            for f in files[:10]:
                click.echo(f"      {f.name}  {f.size} bytes")
    except HubError as exc:
        failed = True
        click.echo(f"FAIL  {connector.transport_type} connection: {exc}")
    sys.exit(1 if failed else 0)


@click.group("mapping")
def mapping_group() -> None:
    """Try a connector's mapping on a file, without a transport or database."""


@mapping_group.command("test")
@click.argument("name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--outbound", is_flag=True, help="FILE is canonical; show the national rendering."
)
@_folder
def mapping_test(name: str, file: Path, outbound: bool, folder: Path | None) -> None:
    """Map FILE with connector NAME's mapping and show the result and findings."""
    from lxml import etree

    from i2es_hub.connectors import find_connector
    from i2es_hub.ingest import Preparer, Submission
    from i2es_hub.mapping import MappingError, compile_mapping
    from i2es_hub.reference import BUILTIN_REFERENCE, load_reference_file

    connector = find_connector(name, folder)
    mapping = compile_mapping(connector.mapping)
    data = file.read_bytes()
    try:
        if outbound:
            click.echo(mapping.to_national(data).decode())
            return
        result = mapping.to_canonical(data, file.name)
    except MappingError as exc:
        click.echo(f"{exc.code}: {exc}", err=True)
        sys.exit(1)
    root = etree.fromstring(result)
    click.echo(etree.tostring(root, pretty_print=True, encoding="unicode"))
    preparer = Preparer([load_reference_file(BUILTIN_REFERENCE)])
    submission = Submission(result, connector.country, connector.name, file.name)
    rejected = False
    for candidate in preparer.prepare(submission):
        label = candidate.doc.label if candidate.doc else file.name
        for f in candidate.findings:
            rejected = rejected or f.severity == "error"
            click.echo(f"{label}: {f.severity} {f.code}: {f.message}", err=True)
        if not candidate.findings:
            click.echo(f"{label}: no findings before the database checks", err=True)
    sys.exit(1 if rejected else 0)


@click.command("pull")
@click.argument("name")
@_folder
def pull_command(name: str, folder: Path | None) -> None:
    """Pull once for connector NAME and print the counts."""
    from i2es_hub import store
    from i2es_hub.connectors import find_connector
    from i2es_hub.exchange import pull

    report = pull(find_connector(name, folder), store.get_engine())
    click.echo(report.summary())
    sys.exit(1 if report.fetch_errors else 0)


@click.command("push")
@click.argument("name")
@_folder
def push_command(name: str, folder: Path | None) -> None:
    """Push the due deliveries of connector NAME's country once; print the counts."""
    from i2es_hub import store
    from i2es_hub.connectors import find_connector
    from i2es_hub.exchange import push

    report = push(find_connector(name, folder), store.get_engine())
    click.echo(report.summary())
    sys.exit(1 if report.error or report.failed else 0)


def register(cli: click.Group) -> None:
    """Add the connector commands to the ``i2es-hub`` group."""
    for command in (connectors_group, mapping_group, pull_command, push_command):
        cli.add_command(command)


__all__ = ["register"]
