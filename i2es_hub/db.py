"""Database lifecycle: migrations and the reference data they ship with."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from i2es_hub import store
from i2es_hub.reference import BUILTIN_REFERENCE, ReferenceList, load_reference_file

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine) -> Any:
    """An Alembic configuration that points at the hub's migrations."""
    from alembic.config import Config  # alembic is slow to import: only here

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(False))
    return config


def upgrade(engine: Engine) -> None:
    """Bring the schema to the latest migration and load the built-in reference list."""
    from alembic import command

    config = alembic_config(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    with store.write_transaction(engine) as conn:
        store_reference(conn, load_reference_file(BUILTIN_REFERENCE), replace=False)
    log.info("database at head: %s", engine.url.render_as_string(True))


def _body(ref: ReferenceList) -> dict[str, Any]:
    substances = []
    for sub in ref.substances.values():
        forms = {
            form: str(factor)
            for (name, form), factor in ref.factors.items()
            if name == sub.name and form != sub.name
        }
        substances.append(
            {
                "name": sub.name,
                "convention": sub.convention,
                "schedule": sub.schedule,
                "forms": forms,
            }
        )
    return {
        "effective_from": ref.effective_from.isoformat(),
        "source": ref.source,
        "substances": substances,
    }


def store_reference(conn: Connection, ref: ReferenceList, *, replace: bool) -> bool:
    """Store a reference list version; returns False when that date already exists."""
    t = store.reference_lists
    existing = conn.execute(
        select(t.c.id).where(t.c.effective_from == ref.effective_from)
    ).scalar_one_or_none()
    if existing is not None:
        if not replace:
            return False
        conn.execute(t.delete().where(t.c.id == existing))
    conn.execute(
        t.insert().values(
            effective_from=ref.effective_from,
            source=ref.source,
            body=_body(ref),
            loaded_at=store.utcnow(),
        )
    )
    return True


__all__ = ["store_reference", "upgrade"]
