"""The i2es-hub command end to end, as a user runs it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.conftest import EXAMPLES
from tests.helpers import batch


def rows(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def many_files(
    folder: Path,
    n: int,
    prefix: str,
    change: Callable[[int, bytes], bytes] = lambda i, data: data,
) -> list[str]:
    """``n`` copies of the example import authorization, numbered PREFIX-00000 on."""
    folder.mkdir()
    example = (EXAMPLES / "import-authorization.xml").read_bytes()
    for i in range(n):
        data = example.replace(b"KE-IA-2026-00042", f"{prefix}-{i:05d}".encode())
        (folder / f"{i:05d}.xml").write_bytes(change(i, data))
    return sorted(str(p) for p in folder.iterdir())


def test_example_chain_through_the_cli(hub, tmp_path: Path):
    hub("db", "upgrade", check=True)
    r = hub(
        "ingest",
        "--json",
        "--from",
        "KE",
        str(EXAMPLES / "import-authorization.xml"),
        check=True,
    )
    [ia] = rows(r.stdout)
    assert ia["document"] == {
        "type": "import-authorization",
        "number": "KE-IA-2026-00042",
        "issuer": "KE",
    }
    assert ia["outcome"] == "accepted" and ia["deliveries"] == ["DE"]
    hub(
        "ingest", "--from", "DE", str(EXAMPLES / "export-authorization.xml"), check=True
    )
    r = hub(
        "ingest",
        "--json",
        "--from",
        "KE",
        str(EXAMPLES / "endorsement-shortfall.xml"),
        check=True,
    )
    [en] = rows(r.stdout)
    shortfall = [f for f in en["findings"] if f["code"] == "SHORTFALL"]
    assert shortfall and shortfall[0]["severity"] == "alert"
    assert set(shortfall[0]) == {"code", "severity", "line", "message"}
    assert en["deliveries"] == ["DE"]

    r = hub("outbox", "list", "--to", "DE", "--json", check=True)
    assert [d["title"] for d in json.loads(r.stdout)] == [
        "import-authorization KE/KE-IA-2026-00042",
        "endorsement KE/KE-EN-2026-00108",
        "SHORTFALL alert",
    ]
    r = hub("documents", "show", "DE/export-authorization/DE-EA-2026-7781", check=True)
    assert "state endorsed" in r.stdout and "KE document" in r.stdout


def test_rejection_sets_the_exit_status_and_lands_in_quarantine(hub, tmp_path: Path):
    hub("db", "upgrade", check=True)
    r = hub(
        "ingest", "--json", "--from", "DE", str(EXAMPLES / "import-authorization.xml")
    )
    assert r.returncode == 1
    [row] = rows(r.stdout)
    assert row["outcome"] == "rejected"
    assert row["findings"][0]["code"] == "SENDER_NOT_ISSUER"
    assert "1 rejected" in r.stderr
    listed = json.loads(hub("quarantine", "list", "--json", check=True).stdout)
    assert len(listed) == 1 and listed[0]["sender"] == "DE"
    r = hub("quarantine", "replay", "--all")
    assert r.returncode == 1 and "1 still rejected" in r.stderr


def test_batch_file_and_repeat_are_idempotent(hub, tmp_path: Path):
    hub("db", "upgrade", check=True)
    docs = [
        (EXAMPLES / "import-authorization.xml")
        .read_bytes()
        .replace(b"KE-IA-2026-00042", f"KE-IA-B-{i}".encode())
        for i in range(30)
    ]
    path = tmp_path / "batch.xml"
    path.write_bytes(batch(*docs))
    first = rows(hub("ingest", "--json", "--from", "KE", str(path), check=True).stdout)
    assert [r["outcome"] for r in first] == ["accepted"] * 30
    again = rows(hub("ingest", "--json", "--from", "KE", str(path), check=True).stdout)
    assert [r["outcome"] for r in again] == ["duplicate"] * 30


def test_large_batch_file_is_streamed(hub, tmp_path: Path):
    hub("db", "upgrade", check=True)
    docs = [
        (EXAMPLES / "import-authorization.xml")
        .read_bytes()
        .replace(b"KE-IA-2026-00042", f"KE-IA-S-{i}".encode())
        for i in range(40)
    ]
    docs[20] = docs[20].replace(b"<City>Nairobi</City>", b"")
    path = tmp_path / "big.xml"
    path.write_bytes(data := batch(*docs))
    hub.env["I2ES_HUB_STREAM_THRESHOLD_BYTES"] = "20000"  # the file is ~60 kB: streamed
    out = rows(hub("ingest", "--json", "--from", "KE", str(path)).stdout)
    assert len(out) == 40
    assert [i for i, r in enumerate(out) if r["outcome"] != "accepted"] == [20]
    # the schema finding gives the line in the batch file, where the element is
    at = data.index(b"<Address>", data.index(b"KE-IA-S-20"))
    line = data[:at].count(b"\n") + 1
    assert any(f"line {line}" in f["message"] for f in out[20]["findings"]), (
        line,
        out[20]["findings"],
    )

    # a document stored from the stream is the same document when sent alone
    alone = tmp_path / "alone.xml"
    alone.write_bytes(docs[7])
    out = rows(hub("ingest", "--json", "--from", "KE", str(alone), check=True).stdout)
    assert [r["outcome"] for r in out] == ["duplicate"]


def test_validate_stores_nothing_and_reports_errors(hub, tmp_path: Path):
    hub("db", "upgrade", check=True)
    bad = tmp_path / "bad.xml"
    bad.write_bytes(
        (EXAMPLES / "import-authorization.xml")
        .read_bytes()
        .replace(b"<City>Nairobi</City>", b"")
    )
    r = hub("validate", str(EXAMPLES / "export-authorization.xml"), str(bad))
    assert r.returncode == 1
    assert "valid    " in r.stdout and "invalid" in r.stdout
    assert "SCHEMA_INVALID" in r.stdout and "line 13" in r.stdout
    assert json.loads(hub("documents", "list", "--json", check=True).stdout) == []


def test_help_reads_well(hub):
    r = hub("--help", check=True)
    for command in ("ingest", "validate", "documents", "outbox", "quarantine", "db"):
        assert command in r.stdout


def test_ingest_refuses_a_missing_file_or_a_folder_before_storing_anything(
    hub, tmp_path: Path
):
    hub("db", "upgrade", check=True)
    good = str(EXAMPLES / "import-authorization.xml")
    r = hub("ingest", "--from", "KE", good, str(tmp_path / "missing.xml"))
    assert r.returncode == 2
    assert "cannot read" in r.stderr and "missing.xml" in r.stderr
    r = hub("ingest", "--from", "KE", good, str(tmp_path))
    assert r.returncode == 2
    assert "not a regular file" in r.stderr and "DIR/*.xml" in r.stderr
    # nothing was ingested by the refused runs: the example is new now
    [row] = rows(hub("ingest", "--json", "--from", "KE", good, check=True).stdout)
    assert row["outcome"] == "accepted"


def test_ingest_names_an_option_written_after_the_files(hub):
    hub("db", "upgrade", check=True)
    good = str(EXAMPLES / "import-authorization.xml")
    for late in (["--from", "KE"], ["--json"], ["--batch-size=5"]):
        args = ["ingest"] + (["--from", "KE"] if late[0] != "--from" else [])
        r = hub(*args, good, *late)
        assert r.returncode == 2
        assert f"{late[0]} comes after the files" in r.stderr
        assert "put the options first" in r.stderr
    # nothing was ingested by the refused runs: the example is new now
    [row] = rows(hub("ingest", "--json", "--from", "KE", good, check=True).stdout)
    assert row["outcome"] == "accepted"


def test_many_files_are_checked_alike_before_and_after_the_workers_get_the_lists(
    hub, tmp_path: Path
):
    # From 1,000 files on, ingest prepares in worker processes started before the
    # reference lists are read; the first documents are prepared without them.
    hub("db", "upgrade", check=True)
    n, unknown = 1200, {0, 1, 600, 1199}

    def unknown_substance(i: int, data: bytes) -> bytes:
        return data.replace(b">morphine<", b">unobtainium<") if i in unknown else data

    files = many_files(tmp_path / "many", n, "KE-IA-M", unknown_substance)
    r = hub("ingest", "--json", "--from", "KE", *files)
    assert r.returncode == 1
    out = rows(r.stdout)
    assert [row["document"]["number"] for row in out] == [
        f"KE-IA-M-{i:05d}" for i in range(n)
    ]
    assert {i for i, row in enumerate(out) if row["outcome"] == "rejected"} == unknown
    for i in unknown:
        assert "UNKNOWN_SUBSTANCE" in {f["code"] for f in out[i]["findings"]}


def test_a_missing_file_among_thousands_is_refused_before_anything_is_stored(
    hub, tmp_path: Path
):
    # Past the first chunks, the files are checked by a prepare worker while the
    # command loads the database layer; the refusal still comes first.
    hub("db", "upgrade", check=True)
    folder = tmp_path / "many"
    files = many_files(folder, 3400, "KE-IA-R")
    missing = str(tmp_path / "gone.xml")
    r = hub("ingest", "--from", "KE", *files[:3300], missing, *files[3300:])
    assert r.returncode == 2
    assert "cannot read" in r.stderr and "gone.xml" in r.stderr
    assert json.loads(hub("documents", "list", "--json", check=True).stdout) == []
    r = hub("ingest", "--from", "KE", *files, str(folder))
    assert r.returncode == 2 and "not a regular file" in r.stderr
    assert json.loads(hub("documents", "list", "--json", check=True).stdout) == []
