"""The database: tables, engine and transactions.

SQLite in a file is the embedded default (``var/hub.db``); any SQLAlchemy URL in
``I2ES_HUB_DATABASE_URL`` replaces it, and PostgreSQL is the production database.
The schema is owned by the Alembic migrations in ``i2es_hub/migrations``; the tables
below are the code's view of it and must match the latest migration.

Document rows use client-made UUID keys so a batch can be written with a few
multi-row statements instead of one round trip per row.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import json.encoder
import operator
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.sql.elements import ColumnElement

from i2es_hub.errors import ConfigError

DEFAULT_DATABASE = Path("var") / "hub.db"

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Serial = BigInteger().with_variant(Integer(), "sqlite")
Grams = Numeric(24, 3)
Amount = Numeric(24, 6)


def utcnow() -> dt.datetime:
    """The current time in UTC: every timestamp the hub writes is UTC."""
    return dt.datetime.now(dt.UTC)


_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))


def new_id() -> str:
    """A new 128-bit identifier for documents, messages and deliveries.

    Time-ordered like a UUIDv7: 48 bits of milliseconds, then 80 random bits from a
    generator seeded from the OS (and reseeded in forked children). Ids that grow
    with time keep index inserts local, so writing stays as cheap with millions of
    rows as with none; ids must be unique, not secret.
    """
    value = (time.time_ns() // 1_000_000) << 80 | _ids.getrandbits(80)
    return value.to_bytes(16, "big").hex()  # half the time of two formatted fields


def _where_not_null(column: str) -> dict[str, Any]:
    """A partial index's condition: rows where ``column`` is NULL are left out.

    Equality and IN lookups on the column use such an index. Migration 0004
    makes the same indexes partial on PostgreSQL (``postgresql_where``); naming
    that option here would import the PostgreSQL dialect on every start (25 ms
    of a command on SQLite), so the tables name SQLite's only.
    """
    return {"sqlite_where": text(f"{column} IS NOT NULL")}


def _ts(name: str, **kw: Any) -> Column[Any]:
    return Column(name, DateTime(timezone=True), **kw)


documents = Table(
    "documents",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("doc_type", String(32), nullable=False),
    Column("issuer", String(2), nullable=False),
    Column("number", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("version", Integer, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("issue_date", Date, nullable=False),
    Column("validity_from", Date),
    Column("validity_until", Date),
    Column("importer_country", String(2)),
    Column("exporter_country", String(2)),
    Column("ref_type", String(32)),
    Column("ref_number", String(64)),
    Column("ref_country", String(2)),
    Column("linked_id", String(32)),
    Column("emergency", Boolean, nullable=False, default=False),
    Column("sender", String(2), nullable=False),
    Column("channel", String(32), nullable=False),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    UniqueConstraint("issuer", "doc_type", "number"),
    Index(None, "number"),
    # Only documents that quote or are linked to another are ever looked up by
    # these columns: an import authorization (no reference) costs no index entry.
    Index(None, "ref_number", **_where_not_null("ref_number")),
    Index(None, "linked_id", **_where_not_null("linked_id")),
)

document_versions = Table(
    "document_versions",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("document_id", String(32), ForeignKey("documents.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("message_id", String(32), nullable=False, unique=True),
    Column("content_hash", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("original", LargeBinary, nullable=False),
    # Empty when the document arrived in canonical form (``original`` is then it).
    Column("canonical", LargeBinary, nullable=False),
    Column("findings", JSON, nullable=False),
    Column("sender", String(2), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("source", String(512), nullable=False, default=""),
    _ts("received_at", nullable=False),
    UniqueConstraint("document_id", "version"),
)

document_lines = Table(
    "document_lines",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("document_id", String(32), ForeignKey("documents.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("substance", String(128), nullable=False),
    Column("form", String(128), nullable=False),
    Column("quantity", Amount, nullable=False),
    Column("unit", String(8), nullable=False),
    Column("base_grams", Grams),
    Index(None, "document_id", "version"),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    _ts("at", nullable=False),
    Column("document_id", String(32)),
    Column("version", Integer),
    Column("from_state", String(16)),
    Column("to_state", String(16), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("reason", String(512), nullable=False, default=""),
    Index(None, "document_id"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("code", String(40), nullable=False),
    Column("country", String(2), nullable=False),
    Column("document_id", String(32)),
    Column("line_no", Integer),
    Column("message", Text, nullable=False),
    Column("figures", JSON),
    Column("payload", LargeBinary, nullable=False),
    _ts("created_at", nullable=False),
    Index(None, "document_id"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("seq", Serial, primary_key=True, autoincrement=True),
    Column("id", String(32), nullable=False, unique=True),
    Column("recipient", String(2), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("document_id", String(32)),
    Column("version", Integer),
    Column("alert_id", String(32)),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    _ts("next_attempt_at"),
    Column("last_error", Text),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    _ts("delivered_at"),
    _ts("acknowledged_at"),
    Index(None, "recipient", "state", "seq"),
    Index(None, "document_id"),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", String(32), primary_key=True),
    _ts("received_at", nullable=False),
    Column("sender", String(2), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("source", String(512), nullable=False, default=""),
    Column("content_hash", String(64), nullable=False),
    Column("original", LargeBinary, nullable=False),
    Column("findings", JSON, nullable=False),
    Column("doc_type", String(32)),
    Column("issuer", String(8)),
    Column("number", String(128)),
    Column("state", String(16), nullable=False),
    _ts("replayed_at"),
    Index(None, "sender", "content_hash"),
    Index(None, "state"),
)

reference_lists = Table(
    "reference_lists",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("effective_from", Date, nullable=False, unique=True),
    Column("source", String(256), nullable=False),
    Column("body", JSON, nullable=False),
    _ts("loaded_at", nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("country", String(2), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("label", String(128), nullable=False, default=""),
    _ts("created_at", nullable=False),
    _ts("revoked_at"),
)


# ----- engine and transactions --------------------------------------------------


def database_url() -> str:
    """The configured database URL (``I2ES_HUB_DATABASE_URL`` or the SQLite file)."""
    url = os.environ.get("I2ES_HUB_DATABASE_URL", "").strip()
    if not url:
        DEFAULT_DATABASE.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{DEFAULT_DATABASE}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


@functools.cache
def get_engine(url: str | None = None) -> Engine:
    """The engine for ``url`` (default: :func:`database_url`), one per process.

    Raises:
        ConfigError: the URL cannot be understood.
    """
    url = url or database_url()
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError; keep the URL out
        raise ConfigError(
            "I2ES_HUB_DATABASE_URL is not a valid SQLAlchemy URL "
            "(expected e.g. sqlite:///var/hub.db or postgresql://user@host/db)"
        ) from exc
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url, connect_args={"timeout": 60}, json_serializer=dump_json
        )
        _tune_sqlite(engine)
    else:
        engine = create_engine(url, pool_pre_ping=True, json_serializer=dump_json)
    _engines.append(engine)
    return engine


def _json_dumper() -> Callable[[Any], str]:
    """``json.dumps`` with its default settings, its C encoder made once.

    ``json.dumps`` builds a new encoder at every call: half the cost of encoding a
    finding, and the commit stage encodes every stored version's findings. Same
    text as ``json.dumps``; without the C encoder, ``json.dumps`` itself.
    """
    make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if make_encoder is None:
        return json.dumps
    encode = make_encoder(
        None,  # no check for cycles: the hub stores plain data
        json.JSONEncoder().default,
        json.encoder.encode_basestring_ascii,
        None,
        ": ",
        ", ",
        False,
        False,
        True,
    )
    return lambda value: "".join(encode(value, 0))


dump_json = _json_dumper()
"""Serialize a JSON column's value (``json.dumps`` with its defaults, faster)."""


def sqlite_file(engine: Engine) -> str | None:
    """The database file behind a SQLite engine; None for any other database."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.query.get("uri"):
        return None
    name = url.database
    return name if name and name != ":memory:" else None


def dispose_engines() -> None:
    """Close every engine this process opened (for a process about to exit)."""
    if get_engine.cache_info().currsize:
        for engine in _engines:
            engine.dispose()
        _engines.clear()
        get_engine.cache_clear()


_engines: list[Engine] = []


WAL_CHECKPOINT_PAGES = 40_000
"""Pages of write-ahead log (4 KiB each) after which a commit checkpoints it."""


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin hook issue BEGIN itself (pysqlite's own is lazy).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB of page cache
        # Copy the write-ahead log into the database every 160 MiB instead of every
        # 4 MiB: index pages that every batch touches are written back once, not
        # once per batch, and a bulk ingest of 20,000 documents (about 70 MB of
        # pages) commits without stopping for a checkpoint; the prepare process
        # folds the log once it is idle (i2es_hub.prepare). A checkpoint's size
        # does not change what is durable.
        cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        cursor.execute("PRAGMA journal_size_limit=67108864")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the lock up front so two processes never both read, then
        # fail to upgrade to a write lock.
        immediate = conn.info.get("i2es_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


ROWS_PER_INSERT = 50
"""Rows in one multi-row SQLite INSERT (at most 999 values, older builds' limit)."""


class _InsertPlan(NamedTuple):
    one: str  # INSERT of one row
    many: str  # INSERT of `rows` rows
    rows: int
    converters: tuple[Any, ...]


@functools.cache
def _insert_plan(dialect: Any, table: Table, columns: tuple[str, ...]) -> _InsertPlan:
    """SQLite's driver-level INSERTs for ``columns``, and each column's converter."""
    quote = dialect.identifier_preparer.quote
    head = f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)})"
    row = f"({', '.join('?' for _ in columns)})"
    rows = max(1, min(ROWS_PER_INSERT, 999 // len(columns)))
    converters: list[Any] = []
    for name in columns:
        column_type = table.c[name].type
        process = column_type.dialect_impl(dialect).bind_processor(dialect)
        if process is None:
            converters.append(None)
        elif isinstance(column_type, Date | Numeric | Boolean):
            # equal values convert alike (a datetime's time zone makes equal
            # instants print differently, and JSON values are not hashable)
            converters.append(functools.partial(_by_value, process))
        else:
            converters.append(functools.partial(_each, process))
    many = f"{head} VALUES {', '.join([row] * rows)}"
    return _InsertPlan(f"{head} VALUES {row}", many, rows, tuple(converters))


def insert_many(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows that all have the same keys, in one executemany.

    On SQLite they go through :func:`insert_tuples`. Other databases, and rows
    whose keys differ, take ``table.insert()``.
    """
    if not rows:
        return
    columns = tuple(rows[0])
    if conn.dialect.name != "sqlite" or len(set(map(len, rows))) != 1:
        conn.execute(table.insert(), rows)
        return
    getter = operator.itemgetter(*columns)
    if len(columns) == 1:
        values: list[Any] = [(value,) for value in map(getter, rows)]
    else:
        values = list(map(getter, rows))
    insert_tuples(conn, table, columns, values)


def insert_tuples(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    rows: Sequence[Sequence[Any]],
) -> None:
    """Insert rows given as sequences of ``columns``' values, in input order.

    On SQLite each value goes through its column type's bind processor (the
    stored form is the same as ``table.insert()`` writes) and the rows go to the
    driver as they are, which spares the per-row parameter handling of a
    compiled statement: the largest single cost of a batch commit. The work is
    done a column at a time, and a column's distinct values (the batch's
    timestamp, its few dates) are converted once each. The rows then go in
    statements of :data:`ROWS_PER_INSERT` rows each (one executemany), the rest
    one row a statement: SQLite's per-statement work is done once per 50 rows.
    Other databases take ``table.insert()``.
    """
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        named = [dict(zip(columns, row, strict=True)) for row in rows]
        conn.execute(table.insert(), named)
        return
    plan = _insert_plan(conn.dialect, table, columns)
    params = rows
    if any(plan.converters):
        by_column: list[Any] = list(zip(*rows, strict=True))
        for index, convert in enumerate(plan.converters):
            if convert is not None:
                by_column[index] = convert(by_column[index])
        params = list(zip(*by_column, strict=True))
    step = plan.rows
    whole = len(params) - len(params) % step
    if whole:
        chain = itertools.chain.from_iterable
        grouped = [tuple(chain(params[i : i + step])) for i in range(0, whole, step)]
        conn.exec_driver_sql(plan.many, grouped)
    if whole < len(params):
        conn.exec_driver_sql(plan.one, params[whole:])


def _each(process: Callable[[Any], Any], values: Sequence[Any]) -> list[Any]:
    """``process`` applied to each value; once when they are all one object."""
    first = values[0]
    if len(set(map(id, values))) == 1:  # the batch's timestamp
        return [process(first)] * len(values)
    return [process(value) for value in values]


def _by_value(process: Callable[[Any], Any], values: Sequence[Any]) -> list[Any]:
    """``process`` applied once per distinct value (dates, quantities, flags)."""
    try:
        done = {value: process(value) for value in set(values)}
        return list(map(done.__getitem__, values))
    except (TypeError, KeyError):  # unhashable, or a NaN (not equal to itself)
        return [process(value) for value in values]


def in_list(
    column: ColumnElement[Any], name: str, *, sqlite: bool
) -> ColumnElement[bool]:
    """``column IN`` the list of values bound to the parameter ``name``.

    On SQLite the list goes as one JSON parameter, read back with ``json_each``:
    SQLAlchemy renders an expanding parameter's placeholders anew at every
    execution (260 against 96 µs a call for 400 values, and an ingest batch of
    500 makes four such calls). Elsewhere it is an expanding parameter. Either
    way the column's index answers each value.
    """
    if sqlite:
        values = func.json_each(bindparam(name, type_=JSON)).table_valued("value")
        return column.in_(select(values.c.value))
    return column.in_(bindparam(name, expanding=True))


def is_sqlite(engine: Engine) -> bool:
    """True for the embedded SQLite database."""
    return engine.dialect.name == "sqlite"


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a write transaction, committed on success."""
    with engine.connect() as conn:
        conn.info["i2es_write"] = True
        try:
            with conn.begin():
                yield conn
        finally:
            conn.info.pop("i2es_write", None)


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a read-only unit of work."""
    with engine.connect() as conn, conn.begin():
        yield conn


# ----- the estimate ledger (migration 0002) ----------------------------------------

estimates = Table(
    "estimates",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("country", String(2), nullable=False),
    Column("substance", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("year", Integer, nullable=False),
    Column("grams", Grams, nullable=False),
    Column("confirmed_on", Date, nullable=False),
    Column("source", String(512), nullable=False, default=""),
    _ts("loaded_at", nullable=False),
    UniqueConstraint("country", "substance", "kind", "year", "confirmed_on"),
)

balances = Table(
    "balances",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("country", String(2), nullable=False),
    Column("substance", String(128), nullable=False),
    Column("year", Integer, nullable=False),
    Column("reserved", Grams, nullable=False, default=0),
    Column("consumed", Grams, nullable=False, default=0),
    _ts("updated_at", nullable=False),
    UniqueConstraint("country", "substance", "year"),
)

holdings = Table(
    "holdings",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("document_id", String(32), nullable=False),
    Column("substance", String(128), nullable=False),
    Column("kind", String(24), nullable=False),
    Column("country", String(2), nullable=False),
    Column("year", Integer, nullable=False),
    Column("quantity", Grams, nullable=False),
    Column("reserved", Grams, nullable=False),
    Column("drawn", Grams, nullable=False),
    Column("ia_holding_id", String(32)),
    Column("consumed", Grams, nullable=False),
    Column("consumed_year", Integer),
    Column("open", Boolean, nullable=False),
    UniqueConstraint("document_id", "substance"),
    Index(None, "ia_holding_id", **_where_not_null("ia_holding_id")),
    Index(None, "country", "substance", "year"),
)

prohibitions = Table(
    "prohibitions",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("country", String(2), nullable=False),
    Column("substance", String(128), nullable=False),
    Column("since", Date, nullable=False),
    _ts("loaded_at", nullable=False),
    UniqueConstraint("country", "substance", "since"),
)
