"""Shared fixtures: a real database on each backend, examples, the CLI.

Every test that takes ``engine`` runs twice: on a SQLite file and on PostgreSQL
(127.0.0.1:5432, user postgres). Where PostgreSQL does not answer, its runs skip
with the reason shown. Set I2ES_HUB_TEST_PG_URL to point at another server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from i2es_hub import db, store
from i2es_hub.reference import BUILTIN_REFERENCE, load_reference_file

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PG_ADMIN_URL = os.environ.get(
    "I2ES_HUB_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
KEEP_TABLES = {"alembic_version", "reference_lists"}
BUILTIN_SOURCE = load_reference_file(BUILTIN_REFERENCE).source


def _pg_available() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(
            PG_ADMIN_URL.replace("+psycopg", ""), connect_timeout=3
        ) as conn:
            conn.execute("select 1")
    except Exception as exc:  # any failure means: skip, and say why
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}"
    return None


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    reason = _pg_available()
    if reason:
        pytest.skip(reason)
    import psycopg

    name = f"i2es_test_{uuid.uuid4().hex[:10]}"
    admin = PG_ADMIN_URL.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    store.get_engine.cache_clear()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'hub.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """The URL of a migrated, empty hub database on each backend."""
    url: str = request.getfixturevalue(
        f"{request.param}_url".replace("postgresql", "pg")
    )
    engine = store.get_engine(url)
    db.upgrade(engine)
    _empty(engine)
    return url


@pytest.fixture
def engine(db_url: str) -> Engine:
    return store.get_engine(db_url)


def _empty(engine: Engine) -> None:
    tables = [
        t for t in reversed(store.metadata.sorted_tables) if t.name not in KEEP_TABLES
    ]
    with engine.begin() as conn:
        # reference lists a test loaded go; the built-in one stays
        conn.execute(
            store.reference_lists.delete().where(
                store.reference_lists.c.source != BUILTIN_SOURCE
            )
        )
        if engine.dialect.name == "postgresql":
            names = ", ".join(t.name for t in tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(table.delete())


@pytest.fixture
def example() -> dict[str, bytes]:
    """The example chain's files, by name without extension."""
    return {p.stem: p.read_bytes() for p in EXAMPLES.glob("*.xml")}


def set_estimates(engine: Engine, csv_text: str) -> None:
    """Load an estimates CSV (with its header) into the test database."""
    from i2es_hub.estimates import load_estimates, parse_estimates

    with store.write_transaction(engine) as conn:
        load_estimates(conn, parse_estimates(csv_text, "test"), "test")


GENEROUS_ESTIMATES = """country,substance,year,kind,grams,confirmed_on
KE,morphine,2026,estimate,1000000,2025-11-01
KE,codeine,2026,estimate,1000000,2025-11-01
KE,psilocybine,2026,assessment,1000,2025-11-01
"""


class Hub:
    """Runs the real ``i2es-hub`` command against one database."""

    def __init__(self, url: str, cwd: Path) -> None:
        self.env = dict(os.environ, I2ES_HUB_DATABASE_URL=url)
        self.cwd = cwd

    def __call__(
        self, *args: str, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "i2es_hub.cli", *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"i2es-hub {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result


@pytest.fixture
def hub(db_url: str, tmp_path: Path) -> Hub:
    return Hub(db_url, tmp_path)
