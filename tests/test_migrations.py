"""The Alembic migrations build exactly the tables the code uses, on each backend."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from i2es_hub import db, store


def test_migrated_schema_matches_the_code(engine):
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), store.metadata)
    assert differences == []


def test_upgrade_is_idempotent(engine):
    def reference_lists():
        with engine.connect() as conn:
            return conn.execute(store.reference_lists.select()).all()

    before = reference_lists()
    db.upgrade(engine)  # a second run changes nothing and keeps the reference data
    assert reference_lists() == before
    assert len(before) >= 1
