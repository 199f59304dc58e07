"""Quarantine: rejected input kept with its original bytes, and its replay."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from sqlalchemy import select
from sqlalchemy.engine import Engine

from i2es_hub import store
from i2es_hub.errors import ConfigError
from i2es_hub.findings import Finding
from i2es_hub.ingest import Candidate, Pipeline, Result, Submission

log = logging.getLogger(__name__)


def replay(engine: Engine, ids: list[str] | None) -> list[tuple[str, Result]]:
    """Send quarantined input through the pipeline again.

    Input that came through a connector goes through that connector's mapping
    again, so a fixed mapping or code table lets it in. An entry whose documents
    now pass is marked ``replayed``; one that fails again stays quarantined with the
    same id (ingest finds it by content), so replaying is safe to repeat.

    Args:
        engine: The hub database.
        ids: Quarantine ids, or None for every entry still quarantined.
    """
    q = store.quarantine
    query = (
        select(q.c.id, q.c.original, q.c.sender, q.c.channel, q.c.source)
        .where(q.c.state == "quarantined")
        .order_by(q.c.received_at)
    )
    if ids is not None:
        query = query.where(q.c.id.in_(ids))
    with store.read_transaction(engine) as conn:
        entries = conn.execute(query).all()
    pipeline = Pipeline(engine)
    out: list[tuple[str, Result]] = []
    for entry in entries:
        sub = Submission(entry.original, entry.sender, entry.channel, entry.source)
        results = list(pipeline.commit_all(_candidates(pipeline, sub)))
        if results and all(r.outcome != "rejected" for r in results):
            with store.write_transaction(engine) as conn:
                conn.execute(
                    q.update()
                    .where(q.c.id == entry.id)
                    .values(state="replayed", replayed_at=store.utcnow())
                )
        out += [(entry.id, r) for r in results]
    log.info("replayed %d quarantine entries", len(entries))
    return out


def _candidates(pipeline: Pipeline, sub: Submission) -> Iterator[Candidate]:
    """Prepare a quarantined submission, through its connector's mapping if any."""
    from i2es_hub.connectors import load_connectors
    from i2es_hub.mapping import MappingError, compile_mapping

    try:
        connector = load_connectors().get(sub.channel)
    except ConfigError as exc:
        log.warning(
            "connectors could not be loaded (%s); replaying %s as canonical",
            exc,
            sub.source,
        )
        connector = None
    if connector is None or connector.country != sub.sender:
        yield from pipeline.prepare(sub)
        return
    try:
        data = compile_mapping(connector.mapping).to_canonical(sub.data, sub.source)
    except MappingError as exc:
        finding = Finding.of(exc.code, str(exc), source_line=exc.line)
        yield Candidate(sub, sub.data, sub.data, [finding])
        return
    yield from pipeline.prepare(
        Submission(data, sub.sender, sub.channel, sub.source, original=sub.data)
    )
