"""The ``i2es-hub`` command line: every step of the hub, without a scheduler."""

from __future__ import annotations

import json
import logging
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from i2es_hub import db, outbox, store
from i2es_hub.errors import HubError

log = logging.getLogger("i2es_hub")


def _engine() -> Any:
    return store.get_engine()


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, default=str, sort_keys=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-v", "--verbose", count=True, help="More log output (-v INFO, -vv DEBUG)."
)
def cli(verbose: int) -> None:
    """i2es-hub: exchange import and export authorizations with I2ES.

    The database is the SQLite file var/hub.db unless I2ES_HUB_DATABASE_URL names
    another (for example postgresql://postgres@127.0.0.1/i2es).
    """
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main() -> None:
    """Entry point: run the CLI, turning hub errors into one clear line."""
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except HubError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


# ----- db ------------------------------------------------------------------------


@cli.group("db")
def db_group() -> None:
    """Create or migrate the hub database."""


@db_group.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the latest schema and load the reference data."""
    engine = _engine()
    db.upgrade(engine)
    click.echo(f"database is up to date: {engine.url.render_as_string(True)}")


# ----- validate and ingest -------------------------------------------------------


def _pipeline(**kwargs: Any) -> Any:
    from i2es_hub.ingest import Pipeline

    return Pipeline(_engine(), **kwargs)


def _describe(result: Any) -> str:
    ident = (
        f"{result.doc_type} {result.issuer}/{result.number}"
        if result.doc_type
        else result.source
    )
    line = f"{result.outcome:<9} {ident}"
    if result.deliveries:
        line += f" -> {', '.join(result.deliveries)}"
    notes = [
        f"{f.code}"
        for f in result.findings
        if f.severity in ("error", "warning", "hold", "alert")
    ]
    if notes:
        line += f"  [{', '.join(notes)}]"
    return line


def _progress(results: Iterator[Any], total_files: int) -> Iterator[Any]:
    """Show a progress line on a terminal for long runs."""
    if not sys.stderr.isatty():
        yield from results
        return
    count = 0
    for result in results:
        count += 1
        if count % 500 == 0:
            click.echo(
                f"\r{count} documents ({total_files} files)...", err=True, nl=False
            )
        yield result
    if count >= 500:
        click.echo("", err=True)


@cli.command("validate")
@click.argument(
    "files",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per document.")
def validate(files: tuple[Path, ...], as_json: bool) -> None:
    """Check files against the canonical schema and the document rules; store nothing.

    Exit status 1 when any document has an error.
    """
    pipeline = _pipeline()
    failed = False
    for path in files:
        for cand in pipeline.prepare_path(path, sender="--", channel="validate"):
            errors = [f for f in cand.findings if f.severity == "error"]
            failed = failed or bool(errors)
            doc = cand.doc
            ident = f"{doc.doc_type.value} {doc.issuer}/{doc.number}" if doc else None
            if as_json:
                _emit_json(
                    {
                        "source": path.name,
                        "document": ident,
                        "valid": not errors,
                        "findings": [f.to_dict() for f in cand.findings],
                    }
                )
            else:
                click.echo(
                    f"{'invalid' if errors else 'valid':<8} {path}"
                    + (f"  {ident}" if ident else "")
                )
                for f in cand.findings:
                    click.echo(f"  {f.severity:<7} {f.code}: {f.message}")
    sys.exit(1 if failed else 0)


@cli.command("ingest")
@click.option(
    "--from",
    "sender",
    required=True,
    metavar="COUNTRY",
    help="The sending country (ISO alpha-2); it must issue the documents.",
)
@click.option(
    "--channel",
    default="cli",
    show_default=True,
    help="Channel recorded in the audit trail.",
)
@click.option(
    "--batch-size",
    default=500,
    show_default=True,
    help="Documents per database transaction.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object per document."
)
@click.argument(
    "files",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
def ingest(
    sender: str, channel: str, batch_size: int, as_json: bool, files: tuple[Path, ...]
) -> None:
    """Ingest files (one document or a Batch each) sent by COUNTRY.

    Every document is validated, checked, stored and routed. Exit status 1 when
    any document was rejected (it is then in quarantine with its findings).
    """
    sender = sender.upper()
    pipeline = _pipeline(batch_size=batch_size)
    candidates = pipeline.prepare_paths(files, sender, channel)
    counts: Counter[str] = Counter()
    for result in _progress(pipeline.commit_all(candidates), len(files)):
        counts[result.outcome] += 1
        if as_json:
            _emit_json(result.to_json())
        else:
            click.echo(_describe(result))
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "nothing"
    click.echo(
        f"ingested {sum(counts.values())} documents from {len(files)} files: {summary}",
        err=True,
    )
    sys.exit(1 if counts["rejected"] else 0)


# ----- documents -----------------------------------------------------------------


@cli.group("documents")
def documents_group() -> None:
    """Look at stored documents."""


@documents_group.command("list")
@click.option("--issuer", help="Only documents issued by this country.")
@click.option("--type", "doc_type", help="Only this document type.")
@click.option("--state", help="Only documents in this state.")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def documents_list(
    issuer: str | None,
    doc_type: str | None,
    state: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List documents, newest first."""
    d = store.documents
    query = select(d).order_by(d.c.updated_at.desc(), d.c.id).limit(limit)
    if issuer:
        query = query.where(d.c.issuer == issuer.upper())
    if doc_type:
        query = query.where(d.c.doc_type == doc_type)
    if state:
        query = query.where(d.c.state == state)
    with store.read_transaction(_engine()) as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    if as_json:
        _emit_json(rows)
        return
    for r in rows:
        click.echo(
            f"{r['id']}  {r['state']:<9} v{r['version']}  {r['doc_type']:<21} "
            f"{r['issuer']}/{r['number']}  {r['importer_country'] or '-'}"
            f"<-{r['exporter_country'] or '-'}"
        )


@documents_group.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
def documents_show(ref: str, as_json: bool) -> None:
    """Show a document with its versions, audit trail and deliveries.

    REF is the document id, or ISSUER/TYPE/NUMBER (e.g. KE/import-authorization/X1).
    """
    with store.read_transaction(_engine()) as conn:
        info = outbox.document_status(conn, ref)
    if info is None:
        raise click.ClickException(
            f"no document {ref!r}; give its id or ISSUER/TYPE/NUMBER "
            "(see 'i2es-hub documents list')"
        )
    if as_json:
        _emit_json(info)
        return
    doc = info["document"]
    click.echo(
        f"{doc['doc_type']} {doc['issuer']}/{doc['number']}  state {doc['state']}"
        f"  version {doc['version']}  id {doc['id']}"
    )
    for v in info["versions"]:
        click.echo(
            f"  version {v['version']} {v['outcome']} {v['received_at']} via "
            f"{v['channel']} ({v['source']})"
        )
        for f in v["findings"]:
            click.echo(f"    {f['severity']:<7} {f['code']}: {f['message']}")
    click.echo("  audit:")
    for a in info["audit"]:
        click.echo(
            f"    {a['at']} {a['from_state']} -> {a['to_state']} by {a['actor']}"
            f" {a['reason']}"
        )
    click.echo("  deliveries:")
    for dl in info["deliveries"]:
        click.echo(
            f"    {dl['recipient']} {dl['kind']:<8} {dl['state']:<12} "
            f"attempts {dl['attempts']}"
        )


# ----- outbox --------------------------------------------------------------------


@cli.group("outbox")
def outbox_group() -> None:
    """Deliveries waiting for, or made to, each country."""


@outbox_group.command("list")
@click.option("--to", "recipient", required=True, metavar="COUNTRY")
@click.option("--state", help="pending, retrying, delivered, acknowledged or failed.")
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def outbox_list(recipient: str, state: str | None, limit: int, as_json: bool) -> None:
    """List deliveries addressed to COUNTRY, oldest first."""
    with store.read_transaction(_engine()) as conn:
        rows = outbox.list_deliveries(conn, recipient.upper(), state=state, limit=limit)
    if as_json:
        _emit_json(rows)
        return
    for r in rows:
        what = r.get("title") or r["kind"]
        click.echo(f"{r['seq']:>6} {r['id']}  {r['state']:<12} {r['kind']:<8} {what}")
    click.echo(f"{len(rows)} deliveries to {recipient.upper()}", err=True)


# ----- quarantine ----------------------------------------------------------------


@cli.group("quarantine")
def quarantine_group() -> None:
    """Rejected input, kept with its original bytes and findings."""


@quarantine_group.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include replayed entries.")
@click.option("--json", "as_json", is_flag=True)
def quarantine_list(show_all: bool, as_json: bool) -> None:
    """List quarantined input, newest first."""
    q = store.quarantine
    query = select(
        q.c.id,
        q.c.received_at,
        q.c.sender,
        q.c.channel,
        q.c.source,
        q.c.doc_type,
        q.c.issuer,
        q.c.number,
        q.c.state,
        q.c.findings,
    )
    if not show_all:
        query = query.where(q.c.state == "quarantined")
    with store.read_transaction(_engine()) as conn:
        rows = [
            dict(r)
            for r in conn.execute(query.order_by(q.c.received_at.desc())).mappings()
        ]
    if as_json:
        _emit_json(rows)
        return
    for r in rows:
        codes = ",".join(sorted({f["code"] for f in r["findings"]}))
        click.echo(
            f"{r['id']}  {r['state']:<11} from {r['sender']} via {r['channel']}"
            f" ({r['source']})  {codes}"
        )


@quarantine_group.command("replay")
@click.argument("ids", nargs=-1)
@click.option(
    "--all", "replay_all", is_flag=True, help="Replay every quarantined entry."
)
@click.option("--json", "as_json", is_flag=True)
def quarantine_replay(ids: tuple[str, ...], replay_all: bool, as_json: bool) -> None:
    """Run quarantined input through the pipeline again (after a fix upstream)."""
    from i2es_hub.quarantine import replay

    if not ids and not replay_all:
        raise click.UsageError("give quarantine ids or --all")
    results = replay(_engine(), None if replay_all else list(ids))
    for qid, result in results:
        if as_json:
            _emit_json({"quarantine_id": qid, **result.to_json()})
        else:
            click.echo(f"{qid}: {_describe(result)}")
    still = sum(1 for _, r in results if r.outcome == "rejected")
    click.echo(f"replayed {len(results)} entries; {still} still rejected", err=True)
    sys.exit(1 if still else 0)


# ----- API -----------------------------------------------------------------------

from i2es_hub.api.commands import serve, tokens_group  # noqa: E402

cli.add_command(serve)
cli.add_command(tokens_group)


if __name__ == "__main__":
    main()
