"""The commit stage's fast paths store and carry exactly what the plain ones do.

``store.insert_many`` hands SQLite tuples straight to the driver; a stored row must
read back the same as one written by ``table.insert()``. Prepared candidates cross
from worker processes by pickle; a round trip must give back an equal candidate.
"""

from __future__ import annotations

import datetime as dt
import json
import pickle
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import StatementError

from i2es_hub import store
from i2es_hub.ingest import Pipeline
from i2es_hub.submissions import Submission


def _alert_row(alert_id: str, at: dt.datetime) -> dict[str, object]:
    return {
        "id": alert_id,
        "code": "SHORTFALL",
        "country": "DE",
        "document_id": None,
        "line_no": 1,
        "message": "received 900 g of 1000 g — 100 g short",
        "figures": {"authorized": "1000.000", "received": "900.000"},
        "payload": b"<Alert>\x00\xff</Alert>",
        "created_at": at,
    }


def _read(engine: Engine, alert_id: str) -> dict[str, object]:
    a = store.alerts
    with store.read_transaction(engine) as conn:
        return dict(conn.execute(select(a).where(a.c.id == alert_id)).mappings().one())


def test_insert_many_stores_what_table_insert_stores(engine: Engine) -> None:
    at = dt.datetime(2026, 12, 4, 5, 6, 7, 890123, tzinfo=dt.UTC)
    with store.write_transaction(engine) as conn:
        conn.execute(store.alerts.insert(), [_alert_row("plain", at)])
        store.insert_many(
            conn, store.alerts, [_alert_row("fast-1", at), _alert_row("fast-2", at)]
        )

    plain = _read(engine, "plain")
    for alert_id in ("fast-1", "fast-2"):
        fast = _read(engine, alert_id)
        assert {k: v for k, v in fast.items() if k != "id"} == {
            k: v for k, v in plain.items() if k != "id"
        }


def test_insert_many_converts_each_value_as_table_insert_does(engine: Engine) -> None:
    # Values are converted a column at a time, once per distinct value: equal
    # dates and quantities share a conversion, but equal instants written in two
    # time zones must each keep their own form.
    utc = dt.datetime(2026, 12, 4, 10, 0, tzinfo=dt.UTC)
    plus_two = utc.astimezone(dt.timezone(dt.timedelta(hours=2)))
    first, second = dt.date(2026, 1, 5), dt.date(2026, 7, 1)
    varied = [
        (first, None, True, utc, Decimal("1000"), Decimal("752.0")),
        (first, second, False, plus_two, Decimal("1000.000"), None),
        (second, second, True, utc, Decimal("0.5"), Decimal("0.376")),
    ]

    def rows(prefix: str) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
        docs, lines = [], []
        for i, (issued, until, emergency, updated, qty, base) in enumerate(varied):
            doc_id = f"{prefix}{i}"
            docs.append(
                {
                    "id": doc_id, "doc_type": "import-authorization", "issuer": "KE",
                    "number": doc_id, "state": "accepted", "version": 1,
                    "content_hash": "0" * 64, "issue_date": issued,
                    "validity_from": issued, "validity_until": until,
                    "importer_country": "KE", "exporter_country": "DE",
                    "ref_type": None, "ref_number": None, "ref_country": None,
                    "linked_id": None, "emergency": emergency, "sender": "KE",
                    "channel": "test", "created_at": utc, "updated_at": updated,
                }
            )  # fmt: skip
            lines.append(
                {
                    "document_id": doc_id, "version": 1, "line_no": 1,
                    "substance": "morphine", "form": "base", "quantity": qty,
                    "unit": "g", "base_grams": base,
                }
            )  # fmt: skip
        return docs, lines

    plain_docs, plain_lines = rows("plain")
    fast_docs, fast_lines = rows("fast")
    with store.write_transaction(engine) as conn:
        conn.execute(store.documents.insert(), plain_docs)
        conn.execute(store.document_lines.insert(), plain_lines)
        store.insert_many(conn, store.documents, fast_docs)
        store.insert_many(conn, store.document_lines, fast_lines)
        # compared as stored (the text SQLite keeps), not only as read back
        stored = {
            table: {
                row[key]: row
                for row in conn.exec_driver_sql(f"SELECT * FROM {table}").mappings()
            }
            for table, key in (("documents", "id"), ("document_lines", "document_id"))
        }

    names = {"id", "number", "document_id"}  # the prefix differs there, by design
    for i in range(len(varied)):
        for rows_by_key in stored.values():
            plain, fast = rows_by_key[f"plain{i}"], rows_by_key[f"fast{i}"]
            differing = {name for name in plain if plain[name] != fast[name]}
            assert differing <= names, (i, dict(plain), dict(fast))


def test_insert_tuples_stores_every_row_in_order_past_a_multi_row_statement(
    engine: Engine,
) -> None:
    # Two whole multi-row statements and a remainder of single-row ones.
    count = 2 * store.ROWS_PER_INSERT + 3
    at = dt.datetime(2026, 12, 4, 5, 6, 7, tzinfo=dt.UTC)
    rows = [
        (at, f"doc-{i:03d}", i % 3 + 1, None if i % 2 else "received", "accepted",
         "KE/cli", f"reason {i:03d}")
        for i in range(count)
    ]  # fmt: skip
    columns = ("at", "document_id", "version", "from_state", "to_state", "actor",
               "reason")  # fmt: skip
    with store.write_transaction(engine) as conn:
        store.insert_tuples(conn, store.audit, columns, rows)
    a = store.audit
    with store.read_transaction(engine) as conn:
        stored = conn.execute(
            select(*(a.c[name] for name in columns)).order_by(a.c.id)
        ).all()
    # SQLite gives timestamps back without their zone (stored as UTC)
    naive = at.replace(tzinfo=None)
    assert [
        (row[0].astimezone(dt.UTC).replace(tzinfo=None) if row[0].tzinfo else row[0],
         *row[1:])
        for row in stored
    ] == [(naive, *row[1:]) for row in rows]  # fmt: skip


@pytest.mark.parametrize(
    "value",
    [
        [],
        [{"code": "NO_ESTIMATE", "line": 1, "figures": {"year": 2026, "g": "752.0"}}],
        {"text": 'é " \\ \n', "numbers": [1.5, -0.0, 10**30], "flags": [True, None]},
        "plain",
    ],
)
def test_json_columns_are_written_as_json_dumps_writes_them(value: object) -> None:
    assert store.dump_json(value) == json.dumps(value)


def test_insert_many_refuses_rows_whose_keys_differ(engine: Engine) -> None:
    # A row missing a key must not be stored with its values shifted into the
    # wrong columns: the batch fails, as table.insert() would, and nothing stays.
    at = store.utcnow()
    short = _alert_row("short", at)
    del short["figures"]
    rows = [_alert_row("full", at), short]
    with (
        pytest.raises(StatementError, match="figures"),
        store.write_transaction(engine) as conn,
    ):
        store.insert_many(conn, store.alerts, rows)

    a = store.alerts
    with store.read_transaction(engine) as conn:
        assert conn.execute(select(a.c.id)).all() == []


def test_prepared_candidates_survive_the_trip_from_the_prepare_process(
    engine: Engine, example: dict[str, bytes]
) -> None:
    from i2es_hub.findings import Finding
    from i2es_hub.transfer import dump_chunk, load_chunk

    pipeline = Pipeline(engine)
    submissions = [
        Submission(data, "DE" if name.startswith("export") else "KE", "cli", name)
        for name, data in sorted(example.items())
    ]
    # a document with the optional parts: a second street, a preparation with
    # its strength and base quantity, an emergency with remarks; a rejected one
    # (no model, schema findings); bytes that are not XML
    ea = example["export-authorization"]
    full = (
        ea.replace(
            b"<Street>Popo Road, off Mombasa Road</Street>",
            b"<Street>Popo Road, off Mombasa Road</Street><Street>Gate 3</Street>",
        )
        .replace(
            b'<Quantity unit="g">1000</Quantity>',
            b'<PreparationName>MST</PreparationName><Quantity unit="g">1000</Quantity>'
            b'<StrengthPerUnit unit="mg">10.50</StrengthPerUnit>'
            b'<BaseQuantity unit="g">752.0</BaseQuantity>',
        )
        .replace(
            b"</ExpectedDispatchDate>",
            b"</ExpectedDispatchDate><Emergency>true</Emergency><Remarks>r</Remarks>",
        )
    )
    broken = ea.replace(b"<Lines>", b"<Bogus/><Lines>")
    submissions += [
        Submission(full, "DE", "cli", "full"),
        Submission(broken, "DE", "cli", "broken"),
        Submission(b"not xml", "KE", "api", "junk", original=b"raw bytes"),
    ]
    candidates = [c for s in submissions for c in pipeline.prepare(s)]
    whole = candidates[-3].doc
    assert whole is not None and whole.emergency and whole.remarks == "r"
    assert len(whole.importer.street) == 2  # type: ignore[union-attr]
    assert whole.lines[0].strength == (Decimal("10.50"), "mg")
    assert [c.doc for c in candidates[-2:]] == [None, None]
    assert all(c.findings for c in candidates[-2:])

    back = load_chunk(dump_chunk(candidates))

    assert back == candidates
    for mine, theirs in zip(back, candidates, strict=True):
        if theirs.doc is not None:
            assert mine.doc is not None
            assert mine.doc.source_line == theirs.doc.source_line  # not in ==
            for line, original in zip(mine.doc.lines, theirs.doc.lines, strict=True):
                assert isinstance(line.quantity, Decimal)
                assert str(line.quantity) == str(original.quantity)
            assert type(mine.doc.doc_type) is type(theirs.doc.doc_type)

    # free-form figures marshal cannot carry: the chunk goes by pickle, intact
    odd = candidates[0]
    odd.findings = [Finding("X", "info", "m", figures={"grams": Decimal("1.50")})]
    assert load_chunk(dump_chunk([odd])) == [odd]


def test_prepared_candidate_survives_pickling(
    engine: Engine, example: dict[str, bytes]
) -> None:
    pipeline = Pipeline(engine)
    for name in ("import-authorization", "export-authorization", "endorsement"):
        sender = "DE" if name.startswith("export") else "KE"
        (candidate,) = pipeline.prepare(Submission(example[name], sender, "cli", name))
        assert candidate.doc is not None

        back = pickle.loads(pickle.dumps(candidate))

        assert back == candidate
        assert back.doc == candidate.doc
        assert back.doc.lines[0].quantity == candidate.doc.lines[0].quantity
        assert isinstance(back.doc.lines[0].quantity, Decimal)
        assert back.submission.data == example[name]
