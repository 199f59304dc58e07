"""The pull and push steps of a connector, as plain functions.

``pull`` takes what a national system left for the hub: list the ready files,
fetch them, map each to canonical XML, ingest, and archive the remote files only
after every document of theirs has been committed (store, then acknowledge). A
crash between commit and archive leaves the files in place; the next pull
ingests them again and gets ``duplicate``: nothing is lost and nothing doubled.

``push`` delivers what the outbox holds for the connector's country: render
each due delivery, map it to the national format, hand the batch to the
transport, and record delivered, retrying or failed per delivery.

Each connector ingests only as its own country: the pipeline's sender is the
connector's country, whatever the bytes claim.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from i2es_hub import outbox, store
from i2es_hub.connections import ConnectionInfo
from i2es_hub.connectors import Connector
from i2es_hub.errors import HubError, TransportError
from i2es_hub.findings import Finding
from i2es_hub.ingest import Candidate, Pipeline, Result, Submission
from i2es_hub.mapping import CountryMapping, MappingError, compile_mapping
from i2es_hub.transports import OutboundMessage, RemoteFile, open_transport

log = logging.getLogger(__name__)


@dataclass
class PullReport:
    """What one pull did.

    Attributes:
        connector: The connector's name.
        files: Ready files taken from the inbox.
        archived: Files archived (or deleted) after commit.
        fetch_errors: Files that could not be fetched; they stay in the inbox.
        mapping_failed: Files quarantined because their mapping failed.
        outcomes: Documents per outcome (accepted, held, rejected, ...).
        results: Every document's result, in order.
    """

    connector: str
    files: int = 0
    archived: int = 0
    fetch_errors: list[str] = field(default_factory=list)
    mapping_failed: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    results: list[Result] = field(default_factory=list)

    @property
    def documents(self) -> int:
        """How many documents were ingested."""
        return sum(self.outcomes.values())

    def summary(self) -> str:
        """One line with the counts."""
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        return (
            f"{self.connector}: {self.files} files, {self.documents} documents "
            f"({outcomes or 'none'}), {self.mapping_failed} failed mapping, "
            f"{len(self.fetch_errors)} not fetched, {self.archived} archived"
        )


@dataclass
class PushReport:
    """What one push did.

    Attributes:
        connector: The connector's name.
        due: Deliveries that were due.
        delivered: Taken by the national system.
        retrying: Failed for now; tried again later.
        failed: Parked for an operator (mapping failed, refused, or out of retries).
        error: The transport error that stopped the batch, if any.
    """

    connector: str
    due: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    error: str | None = None

    def summary(self) -> str:
        """One line with the counts."""
        line = (
            f"{self.connector}: {self.due} due, {self.delivered} delivered, "
            f"{self.retrying} retrying, {self.failed} failed"
        )
        return f"{line} ({self.error})" if self.error else line


def pull(
    connector: Connector,
    engine: Engine,
    *,
    connection: ConnectionInfo | None = None,
    limit: int | None = None,
) -> PullReport:
    """Take the ready files of a connector's inbox into the hub.

    Args:
        connector: The connector to pull for.
        engine: The hub database.
        connection: Credentials to use instead of the Airflow connection lookup.
        limit: Files to take at most; the connector's ``batch_size`` by default.

    Raises:
        TransportError: The national system could not be reached or refused us
            (nothing was archived; the next run tries again).
        ConfigError: The mapping files are wrong.
    """
    mapping = compile_mapping(connector.mapping)
    pipeline = Pipeline(
        engine, batch_size=connector.batch_size, policy=connector.policy
    )
    report = PullReport(connector.name)
    with open_transport(connector.transport, connection) as transport:
        files = transport.list_ready(limit=limit or connector.batch_size)
        report.files = len(files)
        taken: list[RemoteFile] = []

        def candidates() -> Iterator[Candidate]:
            for fetched in transport.fetch(files):
                if not fetched.ok:
                    log.warning(
                        "%s: %s not fetched: %s",
                        connector.name,
                        fetched.file.name,
                        fetched.error,
                    )
                    report.fetch_errors.append(f"{fetched.file.name}: {fetched.error}")
                    continue
                taken.append(fetched.file)
                yield from prepare_file(
                    connector,
                    mapping,
                    pipeline,
                    fetched.file.name,
                    fetched.data,
                    report,
                )

        # Every result comes after its commit: consume them all before archiving.
        report.results = list(pipeline.commit_all(candidates()))
        report.outcomes.update(r.outcome for r in report.results)
        _log_files(connector, report.results)
        if taken:
            report.archived = transport.archive(taken)
    log.info("pulled %s", report.summary())
    return report


def prepare_file(
    connector: Connector,
    mapping: CountryMapping,
    pipeline: Pipeline,
    name: str,
    data: bytes,
    report: PullReport,
) -> Iterator[Candidate]:
    """Map one fetched file and prepare its documents (or its quarantine)."""
    original = Submission(
        data, sender=connector.country, channel=connector.name, source=name
    )
    try:
        canonical = mapping.to_canonical(data, name)
    except MappingError as exc:
        report.mapping_failed += 1
        log.warning("%s: %s failed mapping: %s", connector.name, name, exc)
        finding = Finding.of(exc.code, str(exc), source_line=exc.line)
        yield Candidate(original, data, data, [finding])
        return
    yield from pipeline.prepare(
        Submission(
            canonical,
            sender=connector.country,
            channel=connector.name,
            source=name,
            original=data,
        )
    )


def _log_files(connector: Connector, results: list[Result]) -> None:
    by_file: dict[str, Counter[str]] = defaultdict(Counter)
    for result in results:
        by_file[result.source][result.outcome] += 1
    for name, counts in by_file.items():
        log.info(
            "%s: %s: %s",
            connector.name,
            name,
            ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
        )


def push(
    connector: Connector,
    engine: Engine,
    *,
    connection: ConnectionInfo | None = None,
    now: dt.datetime | None = None,
    limit: int | None = None,
) -> PushReport:
    """Deliver the outbox of the connector's country to its national system.

    A transport failure does not raise: every delivery of the batch records a
    failed attempt (retrying when the error is transient) and the report
    carries the error.

    Args:
        connector: The connector to push for.
        engine: The hub database.
        connection: Credentials to use instead of the Airflow connection lookup.
        now: The time to record (UTC); the current time by default.
        limit: Deliveries to push at most; the connector's ``batch_size`` by default.

    Raises:
        ConfigError: The mapping files are wrong.
    """
    mapping = compile_mapping(connector.mapping)
    now = now or store.utcnow()
    report = PushReport(connector.name)
    with store.read_transaction(engine) as conn:
        due = outbox.due(conn, connector.country, now, limit or connector.batch_size)
        rendered = [(row, outbox.render(conn, row)) for row in due]
    report.due = len(due)
    if not due:
        log.info("pushed %s", report.summary())
        return report

    ready: list[tuple[dict[str, Any], OutboundMessage]] = []
    failures: list[tuple[dict[str, Any], str, bool]] = []
    for row, message in rendered:
        try:
            data = mapping.to_national(message.data)
        except MappingError as exc:
            failures.append(
                (row, f"outbound mapping of {connector.name}: {exc}", False)
            )
            continue
        name = connector.outbound_filename(message.message_id, message.kind)
        ready.append(
            (row, OutboundMessage(message.message_id, name, data, mapping.content_type))
        )

    if ready:
        try:
            with open_transport(connector.transport, connection) as transport:
                results = transport.push([m for _, m in ready])
            for (row, _), result in zip(ready, results, strict=True):
                if result.error is None:
                    continue
                failures.append((row, str(result.error), result.error.retriable))
            delivered = [
                row for (row, _), r in zip(ready, results, strict=True) if r.ok
            ]
        except TransportError as exc:
            report.error = str(exc)
            log.warning("%s: push failed: %s", connector.name, exc)
            failures += [(row, str(exc), exc.retriable) for row, _ in ready]
            delivered = []
    else:
        delivered = []

    with store.write_transaction(engine) as conn:
        for row in delivered:
            outbox.mark_delivered(conn, row["id"], now)
        for row, error, retriable in failures:
            state = outbox.mark_failed_attempt(
                conn, row, error, now, retriable=retriable
            )
            if state == "retrying":
                report.retrying += 1
            else:
                report.failed += 1
    report.delivered = len(delivered)
    log.info("pushed %s", report.summary())
    return report


__all__ = ["PullReport", "PushReport", "pull", "push"]


def push_now(
    countries: Iterable[str], engine: Engine, folder: Path | None = None
) -> list[PushReport]:
    """Push the outbox of each country that has a connector, at once.

    Used when a document raised an alert outside a scheduled run (an upload to the
    hub's API): the exporter learns of a shortfall within seconds instead of at its
    connector's next run. Countries without a connector read the hub's inbox
    instead. A failure is logged and left to the scheduled push, which retries.
    """
    from i2es_hub.connectors import load_connectors

    by_country = {c.country: c for c in load_connectors(folder).values()}
    reports = []
    for country in sorted(set(countries)):
        connector = by_country.get(country)
        if connector is None:
            continue
        try:
            reports.append(push(connector, engine))
        except (HubError, OSError) as exc:
            log.warning(
                "%s: immediate push failed (%s); the scheduled push will retry",
                connector.name,
                exc,
            )
    return reports
