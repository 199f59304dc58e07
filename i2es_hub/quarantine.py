"""Quarantine: rejected input kept with its original bytes, and its replay."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.engine import Engine

from i2es_hub import store
from i2es_hub.ingest import Pipeline, Result, Submission

log = logging.getLogger(__name__)


def replay(engine: Engine, ids: list[str] | None) -> list[tuple[str, Result]]:
    """Send quarantined input through the pipeline again.

    An entry whose documents now pass is marked ``replayed``; one that fails again
    stays quarantined with the same id (ingest finds it by content), so replaying
    is safe to repeat.

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
        results = list(pipeline.ingest([sub]))
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
