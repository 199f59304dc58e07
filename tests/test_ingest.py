"""The ingest pipeline on a real database: outcomes, storage, routing, quarantine."""

from __future__ import annotations

import os

import pytest
import yaml
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from i2es_hub import outbox, store
from i2es_hub.db import store_reference
from i2es_hub.ingest import Pipeline, Result, Submission
from i2es_hub.quarantine import replay
from i2es_hub.reference import BUILTIN_REFERENCE, parse_reference
from tests.conftest import GENEROUS_ESTIMATES, set_estimates
from tests.helpers import batch, edit


@pytest.fixture(autouse=True)
def generous_estimates(engine):
    """Estimates large enough that the balance check stays out of these tests."""
    set_estimates(engine, GENEROUS_ESTIMATES)


def ingest(
    engine: Engine, data: bytes, sender: str, source: str = "t.xml"
) -> list[Result]:
    return list(Pipeline(engine).ingest([Submission(data, sender, "test", source)]))


def one(engine: Engine, data: bytes, sender: str) -> Result:
    results = ingest(engine, data, sender)
    assert len(results) == 1
    return results[0]


def codes(result: Result) -> set[str]:
    return {f.code for f in result.findings}


def count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(store.metadata.tables[table])
        ).scalar_one()


def test_example_chain_is_routed_between_the_two_countries(engine, example):
    ia = one(engine, example["import-authorization"], "KE")
    assert (ia.outcome, ia.deliveries) == ("accepted", ["DE"])
    ea = one(engine, example["export-authorization"], "DE")
    assert (ea.outcome, ea.deliveries) == ("accepted", ["KE"])
    assert codes(ea) == set()  # it matches the import authorization it quotes
    en = one(engine, example["endorsement-shortfall"], "KE")
    assert en.outcome == "accepted" and en.deliveries == ["DE"]
    shortfall = next(f for f in en.findings if f.code == "SHORTFALL")
    assert shortfall.severity == "alert"
    # 1000 g of the pentahydrate is 752 g base; 900 g is 676.8 g: 75.2 g short
    assert "752.000" in shortfall.message and "75.200 g short" in shortfall.message

    with engine.connect() as conn:
        to_de = outbox.list_deliveries(conn, "DE")
        to_ke = outbox.list_deliveries(conn, "KE")
        ea_row = outbox.find_document(conn, "DE/export-authorization/DE-EA-2026-7781")
    assert [r["kind"] for r in to_de] == ["document", "document", "alert"]
    assert to_de[2]["title"] == "SHORTFALL alert"
    assert [r["title"] for r in to_ke] == ["export-authorization DE/DE-EA-2026-7781"]
    assert ea_row is not None and ea_row["state"] == "endorsed"


def test_resending_is_a_duplicate_with_no_second_effect(engine, example):
    one(engine, example["import-authorization"], "KE")
    before = (count(engine, "document_versions"), count(engine, "deliveries"))
    again = one(engine, example["import-authorization"], "KE")
    assert again.outcome == "duplicate" and codes(again) == {"DUPLICATE"}
    assert again.deliveries == []
    assert (count(engine, "document_versions"), count(engine, "deliveries")) == before


def test_changed_quantity_is_an_amendment_kept_as_a_new_version(engine, example):
    first = one(engine, example["import-authorization"], "KE")
    amended = one(
        engine,
        edit(example["import-authorization"], **{"c:Lines/c:Line/c:Quantity": "999"}),
        "KE",
    )
    assert amended.outcome == "amended" and "AMENDED" in codes(amended)
    assert amended.document_id == first.document_id
    assert amended.deliveries == ["DE"]  # the exporter is sent the new version
    with engine.connect() as conn:
        status = outbox.document_status(conn, first.document_id)
    assert status is not None
    assert [v["version"] for v in status["versions"]] == [1, 2]
    assert status["document"]["version"] == 2
    trail = [(a["from_state"], a["to_state"]) for a in status["audit"]]
    assert trail == [
        ("received", "accepted"),
        ("accepted", "accepted"),
        ("accepted", "amended"),
    ]


def test_forged_issuer_is_rejected_and_quarantined_with_its_bytes(engine, example):
    data = example["import-authorization"]
    result = one(engine, data, "DE")
    assert result.outcome == "rejected" and codes(result) == {"SENDER_NOT_ISSUER"}
    assert "submitted by DE" in result.findings[0].message
    with engine.connect() as conn:
        row = conn.execute(select(store.quarantine)).mappings().one()
    assert row["original"] == data and row["sender"] == "DE"
    assert row["findings"][0]["code"] == "SENDER_NOT_ISSUER"
    assert count(engine, "documents") == 0 and count(engine, "deliveries") == 0
    # the same bad bytes again do not fill the quarantine twice
    assert one(engine, data, "DE").quarantine_id == result.quarantine_id
    assert count(engine, "quarantine") == 1


def test_one_bad_document_in_a_batch_does_not_reject_its_neighbours(engine, example):
    bad = edit(example["export-authorization"], **{"c:Importer/c:Name": " "})
    results = ingest(engine, batch(example["import-authorization"], bad), "KE")
    assert [r.outcome for r in results] == ["accepted", "rejected"]
    # the export authorization is DE's, and its importer name is blank
    assert codes(results[1]) == {"SENDER_NOT_ISSUER", "MISSING_TREATY_FIELD"}


def test_hostile_xml_is_rejected_with_a_finding_and_quarantined(engine):
    data = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'
    result = one(engine, data, "KE")
    assert result.outcome == "rejected" and codes(result) == {"UNSAFE_XML"}
    with engine.connect() as conn:
        assert conn.execute(select(store.quarantine.c.original)).scalar_one() == data


def test_wrong_root_element_names_what_was_expected(engine, example):
    data = example["import-authorization"].replace(
        b"urn:i2es-hub:canonical:1", b"urn:example:other"
    )
    result = one(engine, data, "KE")
    assert result.outcome == "rejected" and codes(result) == {"SCHEMA_INVALID"}
    assert "expected one of" in result.findings[0].message


def test_quarantined_input_replays_once_the_cause_is_fixed(engine, example):
    data = edit(
        example["endorsement"],
        **{
            "c:Lines/c:Line/c:Substance": "tapentadol",
            "c:Lines/c:Line/c:Form": "tapentadol",
        },
    )
    first = one(engine, data, "KE")
    assert first.outcome == "rejected" and codes(first) == {"UNKNOWN_SUBSTANCE"}
    assert "'tapentadol' is not in the reference list" in first.findings[0].message
    # still unknown: replay keeps it in quarantine under the same id
    [(qid, again)] = replay(engine, None)
    assert qid == first.quarantine_id and again.outcome == "rejected"
    assert count(engine, "quarantine") == 1

    # a new reference list, in force from 2026, adds the substance
    body = yaml.safe_load(BUILTIN_REFERENCE.read_text())
    body["effective_from"] = "2026-01-01"
    body["substances"].append(
        {"name": "tapentadol", "convention": "1961", "schedule": "I", "forms": {}}
    )
    with store.write_transaction(engine) as conn:
        store_reference(conn, parse_reference(body, "test"), replace=False)
    [(qid, fixed)] = replay(engine, [first.quarantine_id])
    assert fixed.outcome == "accepted"
    with engine.connect() as conn:
        state = conn.execute(select(store.quarantine.c.state)).scalar_one()
    assert state == "replayed"
    assert replay(engine, None) == []  # nothing left to replay


def test_export_authorization_before_its_import_authorization_is_linked_later(
    engine, example
):
    ea = one(engine, example["export-authorization"], "DE")
    assert codes(ea) == {"IMPORT_AUTHORIZATION_NOT_FOUND"}
    one(engine, example["import-authorization"], "KE")
    with engine.connect() as conn:
        ea_row = outbox.find_document(conn, ea.document_id)
        ia_row = outbox.find_document(conn, "KE/import-authorization/KE-IA-2026-00042")
    assert ea_row is not None and ia_row is not None
    assert ea_row["linked_id"] == ia_row["id"]


CANCEL_EXAMPLE_IA = b"""<?xml version="1.0" encoding="UTF-8"?>
<Cancellation xmlns="urn:i2es-hub:canonical:1" schemaVersion="1.0">
  <DocumentNumber>KE-CX-2026-1</DocumentNumber><IssuingCountry>KE</IssuingCountry>
  <IssuingAuthority>Pharmacy and Poisons Board</IssuingAuthority>
  <IssueDate>2026-04-01</IssueDate>
  <Cancels><Type>import-authorization</Type><Number>KE-IA-2026-00042</Number>
    <IssuingCountry>KE</IssuingCountry></Cancels>
  <Reason>tender withdrawn</Reason>
</Cancellation>"""


def test_cancellation_routes_to_the_recipient_and_closes_the_document(engine, example):
    ia = one(engine, example["import-authorization"], "KE")
    cancel = CANCEL_EXAMPLE_IA
    result = one(engine, cancel, "KE")
    assert result.outcome == "accepted" and result.deliveries == ["DE"]
    with engine.connect() as conn:
        row = outbox.find_document(conn, ia.document_id)
    assert row is not None and row["state"] == "cancelled"
    # a cancelled document cannot be amended
    amended = one(
        engine,
        edit(example["import-authorization"], **{"c:Lines/c:Line/c:Quantity": "5"}),
        "KE",
    )
    assert amended.outcome == "rejected" and "DOCUMENT_CLOSED" in codes(amended)
    # another country cannot cancel KE's document
    other = one(
        engine,
        cancel.replace(
            b"<IssuingCountry>KE</IssuingCountry>\n  <Issuing",
            b"<IssuingCountry>DE</IssuingCountry>\n  <Issuing",
        ),
        "DE",
    )
    assert other.outcome == "rejected" and "SENDER_NOT_ISSUER" in codes(other)


def test_a_document_cancelled_in_the_batch_that_stores_it_is_stored_cancelled(
    engine, example
):
    submissions = [
        Submission(example["import-authorization"], "KE", "test", "ia.xml"),
        Submission(CANCEL_EXAMPLE_IA, "KE", "test", "cancel.xml"),
    ]
    ia, cancel = Pipeline(engine).ingest(submissions)
    assert (ia.outcome, cancel.outcome) == ("accepted", "accepted")
    with engine.connect() as conn:
        row = outbox.find_document(conn, ia.document_id)
        a = store.audit
        trail = conn.execute(
            select(a.c.from_state, a.c.to_state)
            .where(a.c.document_id == ia.document_id)
            .order_by(a.c.id)
        ).all()
    assert row is not None and row["state"] == "cancelled"
    assert [tuple(t) for t in trail] == [
        ("received", "accepted"),
        ("accepted", "cancelled"),
    ]


def test_rendered_delivery_carries_the_warnings_with_the_document(engine, example):
    one(engine, example["export-authorization"], "DE")  # IA not yet seen: warning
    with engine.connect() as conn:
        [delivery] = outbox.due(conn, "KE", store.utcnow())
        message = outbox.render(conn, delivery)
    assert message.message_id == delivery["id"]
    assert delivery["id"] in message.filename
    assert b'code="IMPORT_AUTHORIZATION_NOT_FOUND"' in message.data
    assert b"<DocumentNumber>DE-EA-2026-7781</DocumentNumber>" in message.data


def test_same_document_alone_and_in_a_batch_is_a_duplicate(engine, example):
    one(engine, example["import-authorization"], "KE")
    [again] = ingest(engine, batch(example["import-authorization"]), "KE")
    assert again.outcome == "duplicate"


def test_connector_input_replays_through_its_mapping(engine):
    from i2es_hub.connectors import load_connectors
    from i2es_hub.estimates import load_prohibitions, parse_prohibitions
    from i2es_hub.mapping import compile_mapping
    from tests.conftest import ROOT

    national = (ROOT / "mappings/ke/samples/import-authorization.xml").read_bytes()
    connector = next(c for c in load_connectors().values() if c.country == "KE")
    canonical_bytes = compile_mapping(connector.mapping).to_canonical(national, "p.xml")
    with store.write_transaction(engine) as conn:
        load_prohibitions(
            conn,
            parse_prohibitions(
                "country,substance,since\nKE,morphine,2020-01-01\n", "test"
            ),
        )
    [first] = Pipeline(engine).ingest(
        [Submission(canonical_bytes, "KE", connector.name, "p.xml", original=national)]
    )
    assert first.outcome == "rejected" and codes(first) == {"IMPORT_PROHIBITED"}
    with engine.connect() as conn:
        kept = conn.execute(select(store.quarantine.c.original)).scalar_one()
    assert kept == national  # the national bytes, as received

    # replayed through the mapping again: the same rule, not a schema error
    [(_, again)] = replay(engine, None)
    assert codes(again) == {"IMPORT_PROHIBITED"}
    with store.write_transaction(engine) as conn:  # the operator lifts the cause
        conn.execute(store.prohibitions.delete())
    [(_, fixed)] = replay(engine, None)
    assert fixed.outcome == "accepted" and fixed.deliveries == ["DE"]


def test_a_file_read_for_ingest_is_whole_even_when_its_size_was_stale(tmp_path):
    # the size comes from fstat; a file that grew after it, or a size that is
    # larger than what one read returns, must still be read to its end
    from i2es_hub.prepare import _read_whole

    path = tmp_path / "doc.xml"
    path.write_bytes(b"x" * 100_000)
    for stale_size in (10, 99_999, 100_000, 250_000):
        fd = os.open(path, os.O_RDONLY)
        try:
            assert _read_whole(fd, stale_size) == b"x" * 100_000
        finally:
            os.close(fd)


def test_collector_settings_come_back_after_overlapping_bulk_runs(engine, example):
    # the API runs ingests in threads: the first to end must not restore the
    # settings under the other, and the last must leave the process as it was
    import gc

    from i2es_hub.ingest import GC_THRESHOLD, bulk_collection

    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    first, second = bulk_collection(), bulk_collection()
    first.__enter__()
    second.__enter__()
    assert gc.get_threshold()[0] >= GC_THRESHOLD
    first.__exit__(None, None, None)
    assert gc.get_threshold()[0] >= GC_THRESHOLD
    second.__exit__(None, None, None)
    assert (gc.get_threshold(), gc.get_freeze_count()) == (before, frozen)

    submission = Submission(example["import-authorization"], "KE", "test", "ia.xml")
    [result] = Pipeline(engine).ingest([submission])
    assert result.outcome == "accepted"
    assert (gc.get_threshold(), gc.get_freeze_count()) == (before, frozen)


def _numbered_files(example, folder, count: int) -> list[str]:
    paths = []
    for i in range(count):
        data = edit(
            example["import-authorization"], **{"c:DocumentNumber": f"KE-IA-P-{i}"}
        )
        path = folder / f"{i:05d}.xml"
        path.write_bytes(data)
        paths.append(str(path))
    return paths


def test_a_prepare_process_that_dies_is_reported_not_taken_for_the_end(
    example, tmp_path
):
    import signal

    from i2es_hub.prepare import PrepareProcess, PrepareProcessError

    paths = _numbered_files(example, tmp_path, 1200)
    sizes = [os.path.getsize(p) for p in paths]
    with PrepareProcess(paths, sizes, "KE", "test") as preparing:
        os.kill(preparing.process.pid, signal.SIGKILL)
        received = []
        with pytest.raises(PrepareProcessError, match="stopped before") as caught:
            received.extend(preparing.candidates())
    assert len(received) < len(paths)
    assert "exit code -9" in str(caught.value)


def test_a_failure_in_the_prepare_process_comes_back_with_its_traceback(
    example, tmp_path
):
    from i2es_hub.prepare import PrepareProcess, PrepareProcessError

    paths = _numbered_files(example, tmp_path, 1200)
    sizes = [os.path.getsize(p) for p in paths]
    os.remove(paths[700])  # gone after its size was taken
    with PrepareProcess(paths, sizes, "KE", "test") as preparing:
        received = []
        with pytest.raises(PrepareProcessError) as caught:
            received.extend(preparing.candidates())
    assert len(received) <= 700
    assert "FileNotFoundError" in str(caught.value)
    assert "00700.xml" in str(caught.value)


def test_candidates_prepared_before_the_reference_lists_get_the_rules(
    engine, example, tmp_path
):
    from i2es_hub.prepare import PrepareProcess

    paths = []
    for i in range(40):
        data = edit(
            example["import-authorization"], **{"c:DocumentNumber": f"KE-IA-EARLY-{i}"}
        )
        if i % 10 == 0:
            data = data.replace(b">morphine<", b">unobtainium<")
        path = tmp_path / f"{i:03d}.xml"
        path.write_bytes(data)
        paths.append(str(path))
    sizes = [os.path.getsize(p) for p in paths]
    with PrepareProcess(paths, sizes, "KE", "test") as preparing:
        # every document is prepared before the process is given the lists: it
        # ends once its last chunk is in the pipe (40 documents fit)
        preparing.process.join(60)
        assert preparing.process.exitcode == 0
        pipeline = Pipeline(engine)
        candidates = list(
            pipeline.prepare_paths(paths, "KE", "test", sizes, preparing=preparing)
        )
    assert all(c.checked for c in candidates)
    unknown = [
        i
        for i, c in enumerate(candidates)
        if "UNKNOWN_SUBSTANCE" in {f.code for f in c.findings}
    ]
    assert unknown == [0, 10, 20, 30]
    # the base quantities the rules compute are there too (1000 g pentahydrate)
    assert candidates[1].bases == {1: pytest.approx(752, abs=1)}


def test_the_prepare_process_folds_the_log_once_everything_is_prepared(
    example, tmp_path
):
    import sqlite3
    import time

    from i2es_hub.prepare import PrepareProcess

    database = tmp_path / "folded.db"
    writer = sqlite3.connect(database, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")  # only the prepare process folds
    writer.execute("CREATE TABLE t (x BLOB)")
    writer.executemany("INSERT INTO t VALUES (?)", [(os.urandom(1000),)] * 2000)
    unfolded = database.stat().st_size
    assert unfolded < 100_000  # the two megabytes are in the write-ahead log

    paths = _numbered_files(example, tmp_path, 20)
    sizes = [os.path.getsize(p) for p in paths]
    with PrepareProcess(paths, sizes, "KE", "test") as preparing:
        preparing.send_references([])
        preparing.fold_log(str(database))
        assert len(list(preparing.candidates())) == len(paths)
        deadline = time.monotonic() + 30
        while database.stat().st_size < 2_000_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        folded = database.stat().st_size
        assert preparing.process.is_alive()  # it folds until the commit side closes
    preparing.process.join(10)
    assert preparing.process.exitcode == 0
    assert folded >= 2_000_000, "the committed rows were not copied into the file"
    assert writer.execute("SELECT count(*) FROM t").fetchone() == (2000,)
    writer.close()
