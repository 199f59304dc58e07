"""The ``i2es-hub`` command line: every step of the hub, without a scheduler."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click

from i2es_hub.errors import HubError

# Commands import the database layer (SQLAlchemy: a fifth of a second) when they
# run, not here: `ingest` starts its prepare process before loading it.

log = logging.getLogger("i2es_hub")


def _engine() -> Any:
    from i2es_hub import store

    return store.get_engine()


def _json_line(result: Any) -> str:
    """A result as ``ingest --json`` prints it (without the newline)."""
    return json.dumps(result.to_json(), default=str)


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=str) + "\n")


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
        _run()
    finally:
        # The process ends here: close the database cleanly (SQLite folds its
        # write-ahead log back in), then keep interpreter shutdown from running the
        # cycle collector over the whole heap once more (70-80 ms after a bulk
        # ingest, for nothing).
        if "i2es_hub.store" in sys.modules:
            sys.modules["i2es_hub.store"].dispose_engines()
        gc.freeze()


def _run() -> None:
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
    from i2es_hub import db

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


def _progress(batches: Iterator[list[Any]], total_files: int) -> Iterator[list[Any]]:
    """Show a progress line on a terminal for long runs (after each batch)."""
    if not sys.stderr.isatty():
        yield from batches
        return
    count = 0
    for results in batches:
        count += len(results)
        if count >= 500:
            click.echo(
                f"\r{count} documents ({total_files} files)...", err=True, nl=False
            )
        yield results
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


class _OptionsFirst(click.Command):
    """A command whose options come before its arguments (``ingest --from KE *.xml``).

    With options allowed among the arguments, click takes the arguments off the
    front of a list one at a time: 36 ms for 20,000 file names before anything
    else starts. With options first it hands them over in one piece. An option
    written after the files is named in the error, not taken for a file.
    """

    allow_interspersed_args = False

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        flags = {name for param in self.get_params(ctx) for name in param.opts}
        try:
            rest = super().parse_args(ctx, args)
        except click.MissingParameter:
            self._refuse_late_options(ctx, args, flags)
            raise
        self._refuse_late_options(ctx, ctx.params.get("files") or (), flags)
        return rest

    @staticmethod
    def _refuse_late_options(
        ctx: click.Context, values: Sequence[str], flags: set[str]
    ) -> None:
        late = [v for v in values if v[:1] == "-" and v.split("=", 1)[0] in flags]
        if late:
            raise click.UsageError(
                f"{late[0]} comes after the files; put the options first, as in "
                f"'{ctx.command_path} --from COUNTRY [OPTIONS] FILE...'",
                ctx,
            )


@cli.command("ingest", cls=_OptionsFirst)
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
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML: {COUNTRY: {hold: [WARNING_CODE, ...]}} to hold for an operator.",
)
@click.argument("files", nargs=-1, required=True)
def ingest(
    sender: str,
    channel: str,
    batch_size: int,
    as_json: bool,
    policy_file: Path | None,
    files: tuple[str, ...],
) -> None:
    """Ingest files (one document or a Batch each) sent by COUNTRY.

    Options come before the files.

    Every document is validated, checked, stored and routed. Exit status 1 when
    any document was rejected (it is then in quarantine with its findings).
    """
    from i2es_hub.policy import Policy
    from i2es_hub.prepare import PrepareProcess, checked_sizes

    sender = sender.upper()
    policy = Policy.from_file(policy_file) if policy_file else None
    # Many files: the prepare process starts now, checks the rest of the files and
    # parses while this process loads the database layer and the reference lists.
    # A file that cannot be read is refused before anything is stored.
    preparing = PrepareProcess.for_files(files, sender, channel)
    sizes = None if preparing else checked_sizes(files)
    with preparing or contextlib.nullcontext():
        pipeline = _pipeline(batch_size=batch_size, policy=policy)
        candidates = pipeline.prepare_paths(files, sender, channel, sizes, preparing)
        counts: Counter[str] = Counter()
        describe = _json_line if as_json else _describe
        batches = pipeline.commit_batches(candidates)
        for results in _progress(batches, len(files)):
            counts.update(result.outcome for result in results)
            # one write per committed batch: stdout may be unbuffered
            sys.stdout.write("".join([describe(result) + "\n" for result in results]))
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
    from sqlalchemy import select

    from i2es_hub import store

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
    from i2es_hub import outbox, store

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
    from i2es_hub import outbox, store

    with store.read_transaction(_engine()) as conn:
        rows = outbox.list_deliveries(conn, recipient.upper(), state=state, limit=limit)
    if as_json:
        _emit_json(rows)
        return
    for r in rows:
        what = r.get("title") or r["kind"]
        click.echo(f"{r['seq']:>6} {r['id']}  {r['state']:<12} {r['kind']:<8} {what}")
    click.echo(f"{len(rows)} deliveries to {recipient.upper()}", err=True)


@outbox_group.command("replay")
@click.argument("ids", nargs=-1)
@click.option(
    "--to", "recipient", metavar="COUNTRY", help="Only deliveries to this country."
)
def outbox_replay(ids: tuple[str, ...], recipient: str | None) -> None:
    """Make failed (parked) deliveries pending again; the next push retries them."""
    from i2es_hub import outbox, store

    with store.write_transaction(_engine()) as conn:
        count = outbox.replay_failed(
            conn,
            store.utcnow(),
            recipient=recipient.upper() if recipient else None,
            ids=list(ids) or None,
        )
    click.echo(f"{count} failed deliveries are pending again")


# ----- quarantine ----------------------------------------------------------------


@cli.group("quarantine")
def quarantine_group() -> None:
    """Rejected input, kept with its original bytes and findings."""


@quarantine_group.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include replayed entries.")
@click.option("--json", "as_json", is_flag=True)
def quarantine_list(show_all: bool, as_json: bool) -> None:
    """List quarantined input, newest first."""
    from sqlalchemy import select

    from i2es_hub import store

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


# ----- reference data, estimates, prohibitions -------------------------------------


@cli.group("reference")
def reference_group() -> None:
    """Substances, forms and conversion factors, versioned by effective date."""


@reference_group.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--replace",
    is_flag=True,
    help="Replace a list already loaded for the same effective date.",
)
def reference_load(file: Path, replace: bool) -> None:
    """Load a reference list (YAML, the layout of i2es_hub/data/reference.yaml)."""
    from i2es_hub import db, store
    from i2es_hub.reference import load_reference_file

    ref = load_reference_file(file)
    with store.write_transaction(_engine()) as conn:
        stored = db.store_reference(conn, ref, replace=replace)
    if not stored:
        raise click.ClickException(
            f"a reference list in force from {ref.effective_from} is already loaded; "
            "use --replace to overwrite it or change effective_from"
        )
    click.echo(
        f"loaded {len(ref.substances)} substances, {len(ref.factors)} forms, "
        f"in force from {ref.effective_from}"
    )


@cli.group("estimates")
def estimates_group() -> None:
    """Estimates (narcotic drugs) and assessments (psychotropic substances)."""


@estimates_group.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def estimates_load(file: Path) -> None:
    """Load a CSV: country,substance,year,kind,grams,confirmed_on.

    A later confirmed_on for the same key supersedes the earlier figure. A file with
    a malformed row loads nothing; the error names the line.
    """
    from i2es_hub import store
    from i2es_hub.estimates import load_estimates, parse_estimates

    rows = parse_estimates(file.read_text(encoding="utf-8"), str(file))
    with store.write_transaction(_engine()) as conn:
        count = load_estimates(conn, rows, file.name)
    click.echo(f"loaded {count} figures from {file}")


@cli.group("prohibitions")
def prohibitions_group() -> None:
    """Import prohibitions notified under article 13 of the 1971 Convention."""


@prohibitions_group.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def prohibitions_load(file: Path) -> None:
    """Load a CSV: country,substance,since."""
    from i2es_hub import store
    from i2es_hub.estimates import load_prohibitions, parse_prohibitions

    rows = parse_prohibitions(file.read_text(encoding="utf-8"), str(file))
    with store.write_transaction(_engine()) as conn:
        count = load_prohibitions(conn, rows)
    click.echo(f"loaded {count} new prohibitions from {file}")


# ----- balances, reconciliation, expiry, held documents ---------------------------


def _grams(value: float | None) -> str:
    return "-" if value is None else f"{value:,.3f}"


@cli.command("balance")
@click.option("--country", required=True, help="The importing country.")
@click.option("--substance", help="Only this substance (INN).")
@click.option("--year", type=int, help="Only this year.")
@click.option("--json", "as_json", is_flag=True)
def balance(
    country: str, substance: str | None, year: int | None, as_json: bool
) -> None:
    """Figure in force, reserved, consumed and available, in grams of base."""
    from i2es_hub import store
    from i2es_hub.ledger import balances

    with store.read_transaction(_engine()) as conn:
        rows = balances(conn, country.upper(), substance, year)
    if as_json:
        _emit_json(rows)
        return
    click.echo(
        f"{'substance':<16}{'year':>5} {'kind':<11}{'figure':>14}"
        f"{'reserved':>14}{'consumed':>14}{'available':>14}"
    )
    for r in rows:
        click.echo(
            f"{r['substance']:<16}{r['year']:>5} {r['kind']:<11}"
            f"{_grams(r['figure']):>14}{_grams(r['reserved']):>14}"
            f"{_grams(r['consumed']):>14}{_grams(r['available']):>14}"
        )


@cli.command("reconcile")
@click.option("--country", required=True)
@click.option("--year", type=int, required=True)
@click.option("--json", "as_json", is_flag=True)
def reconcile_command(country: str, year: int, as_json: bool) -> None:
    """Authorized, exported, received and remaining; open export authorizations."""
    from i2es_hub import store
    from i2es_hub.reconcile import reconcile

    with store.read_transaction(_engine()) as conn:
        report = reconcile(conn, country.upper(), year)
    if as_json:
        _emit_json(report)
        return
    click.echo(f"{report['country']} {report['year']} (grams of anhydrous base)")
    click.echo(
        f"{'substance':<16}{'estimate':>13}{'authorized':>13}{'exported':>13}"
        f"{'received':>13}{'remaining':>13}{'available':>13}"
    )
    for r in report["substances"]:
        click.echo(
            f"{r['substance']:<16}{_grams(r['figure']):>13}"
            f"{_grams(r['authorized']):>13}{_grams(r['exported']):>13}"
            f"{_grams(r['received']):>13}{_grams(r['remaining']):>13}"
            f"{_grams(r['available']):>13}"
        )
    opened = report["open_export_authorizations"]
    click.echo(f"open export authorizations: {len(opened)}")
    for e in opened:
        click.echo(
            f"  {e['issuer']}/{e['number']} from {e['exporter_country']}, "
            f"valid until {e['validity_until']}"
        )


@cli.command("expire")
@click.option(
    "--as-of",
    "as_of",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Expire what was valid only until before this date.",
)
def expire_command(as_of: Any) -> None:
    """Expire authorizations whose validity ended; alert unendorsed exports."""
    from i2es_hub.operations import expire

    report = expire(_engine(), as_of.date())
    click.echo(
        f"expired {report.import_authorizations} import and "
        f"{report.export_authorizations} export authorizations; "
        f"{report.alerts} EXPIRED_UNENDORSED alerts routed"
    )


@cli.group("held")
def held_group() -> None:
    """Documents held by a country's policy for an operator's decision."""


@held_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def held_list(as_json: bool) -> None:
    """List held documents with the findings that held them."""
    from sqlalchemy import select

    from i2es_hub import store

    d, v = store.documents, store.document_versions
    query = (
        select(
            d.c.id, d.c.doc_type, d.c.issuer, d.c.number, v.c.findings, d.c.updated_at
        )
        .join(v, (v.c.document_id == d.c.id) & (v.c.version == d.c.version))
        .where(d.c.state == "held")
        .order_by(d.c.updated_at)
    )
    with store.read_transaction(_engine()) as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    if as_json:
        _emit_json(rows)
        return
    for r in rows:
        held_by = [f["code"] for f in r["findings"] if f["severity"] == "hold"]
        click.echo(
            f"{r['id']}  {r['doc_type']} {r['issuer']}/{r['number']}  held by "
            f"{', '.join(held_by)}"
        )


@held_group.command("release")
@click.argument("document_id")
@click.option(
    "--operator",
    default="cli",
    show_default=True,
    help="Who decides, for the audit trail.",
)
def held_release(document_id: str, operator: str) -> None:
    """Accept a held document: it takes effect on the ledger and is routed."""
    from i2es_hub.operations import release_held

    recipients = release_held(_engine(), document_id, operator)
    click.echo(f"released {document_id}; routed to {', '.join(recipients) or 'nobody'}")


@held_group.command("reject")
@click.argument("document_id")
@click.option("--operator", default="cli", show_default=True)
@click.option("--reason", default="", help="Why, for the audit trail.")
def held_reject(document_id: str, operator: str, reason: str) -> None:
    """Reject a held document."""
    from i2es_hub.operations import reject_held

    reject_held(_engine(), document_id, operator, reason)
    click.echo(f"rejected {document_id}")


# ----- API -----------------------------------------------------------------------

from i2es_hub.api.commands import serve, tokens_group  # noqa: E402

cli.add_command(serve)
cli.add_command(tokens_group)

from i2es_hub.connector_cli import register  # noqa: E402

register(cli)


if __name__ == "__main__":
    main()
