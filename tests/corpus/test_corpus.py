"""The hostile and broken input corpus, through every channel.

``manifest.yaml`` lists each case and what each channel must answer. Every case
runs through the real CLI (a subprocess), the real API application, and the real
connectors: SFTP (``ke-ppb`` behind OpenSSH's sshd when installed; the hostile
listings behind the in-process server, which can be made to lie), the file drop
(``de-bfarm``) and REST (``ch-swissmedic``). For each run the test records the
outcome, the wall time and the peak memory growth, then checks, for all runs:

* the outcome is the manifest's (a finding code or a clean refusal);
* within the safety bounds of ``conftest.py`` (not speed benchmarks);
* nothing crashed: no traceback, no 5xx, no exception out of a pull, no ERROR log;
* nothing outside the hub's data was read: the canary's secret appears in no
  output, log, answer or database row, and the recorder port saw no request.

The table of cases × channels is printed at the end of the run.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from i2es_hub import store, tokens
from i2es_hub.api import create_app
from i2es_hub.exchange import pull
from i2es_hub.simulators import sftp_server as sftp_simulator
from i2es_hub.simulators.national import NationalSystem, national_system
from tests.corpus.conftest import RSS_BOUND_MB, TIME_BOUND_S, Measure, Recorder
from tests.corpus.generate import Context, from_spec, huge_document

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MANIFEST = yaml.safe_load((HERE / "manifest.yaml").read_text(encoding="utf-8"))
CHANNELS: list[str] = MANIFEST["channels"]
CASES: list[dict[str, Any]] = MANIFEST["cases"]
CONNECTORS = {"sftp": "ke-ppb", "filedrop": "de-bfarm", "rest": "ch-swissmedic"}
NATIONAL = {"sftp": "ke", "filedrop": "de", "rest": "ch"}


def _channels(case: dict[str, Any]) -> list[str]:
    return list(case.get("channels", CHANNELS))


def _is_huge(case: dict[str, Any]) -> bool:
    return "huge" in case.get("payload", {})


@dataclass
class Run:
    """One case through one channel."""

    case: str
    channel: str
    outcome: str
    seconds: float = 0.0
    rss_mb: float = 0.0
    said: str = ""  # everything the channel answered or printed


def _summarize(results: list[dict[str, Any]]) -> str:
    """The outcome text of per-document results: first error code, or outcome."""
    parts = []
    for result in results:
        if result["outcome"] == "rejected":
            errors = [f["code"] for f in result["findings"] if f["severity"] == "error"]
            parts.append(errors[0] if errors else "rejected")
        else:
            parts.append(result["outcome"])
    return ", ".join(dict.fromkeys(parts)) or "nothing"


# --- channels -------------------------------------------------------------------


class Cli:
    """The real ``i2es-hub ingest`` in a subprocess, with its own peak RSS."""

    def __init__(self, db_url: str, workdir: Path) -> None:
        self.env = dict(os.environ, I2ES_HUB_DATABASE_URL=db_url)
        self.workdir = workdir
        self.baseline_mb = 0.0

    def _run(self, path: Path) -> tuple[int, str, str, float, float]:
        out, err = self.workdir / "stdout", self.workdir / "stderr"
        with out.open("wb") as o, err.open("wb") as e:
            started = os.times().elapsed
            process = subprocess.Popen(
                [sys.executable, "-m", "i2es_hub.cli", "ingest", "--json"]
                + ["--from", "KE", str(path)],
                env=self.env,
                cwd=self.workdir,
                stdout=o,
                stderr=e,
                stdin=subprocess.DEVNULL,
            )
            try:
                _, status, usage = os.wait4(process.pid, 0)
            finally:
                process.returncode = 0  # reaped by wait4; keep Popen quiet
            seconds = os.times().elapsed - started
        code = os.waitstatus_to_exitcode(status)
        return code, out.read_text(), err.read_text(), seconds, usage.ru_maxrss / 1024

    def calibrate(self, example: Path) -> None:
        """The peak memory of ingesting one valid document: the baseline."""
        code, stdout, stderr, _, peak = self._run(example)
        assert code == 0, stdout + stderr
        self.baseline_mb = peak

    def __call__(self, case: str, path: Path) -> Run:
        code, stdout, stderr, seconds, peak = self._run(path)
        results = [json.loads(line) for line in stdout.splitlines() if line.strip()]
        outcome = _summarize(results)
        if code not in (0, 1) or "Traceback" in stderr:
            outcome = f"CRASH (exit {code})"
        growth = max(0.0, peak - self.baseline_mb)
        return Run(case, "cli", outcome, seconds, growth, stdout + stderr)


class Api:
    """The API application in-process, as KE."""

    def __init__(self, client: TestClient, token: str) -> None:
        self.client = client
        self.token = token

    def __call__(self, case: str, body: Any, content_type: str) -> Run:
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": content_type,
        }
        with Measure() as measure:
            answer = self.client.post("/v1/documents", content=body, headers=headers)
        said = answer.text
        data = answer.json()
        if answer.status_code == 202:
            outcome = f"202 {data['outcome']}"
        elif "result" in data:
            outcome = f"{answer.status_code} {_summarize([data['result']])}"
        else:
            outcome = f"{answer.status_code} {data['error']['code']}"
        return Run(case, "api", outcome, measure.seconds, measure.rss_mb, said)


class Connector:
    """A sample national system and the hub's pull from it."""

    def __init__(self, channel: str, system: NationalSystem, engine: Engine) -> None:
        self.channel = channel
        self.system = system
        self.engine = engine

    def name_for(self, case: str) -> str:
        pattern = getattr(self.system.connector.transport, "rules", None)
        if pattern is None:
            return f"{case}.json"
        return pattern.pattern.replace("*", case)

    def __call__(self, case: str, name: str, data: bytes | None) -> Run:
        if data is not None:
            self.system.send(name, data)
        with Measure() as measure:
            try:
                report = pull(
                    self.system.connector,
                    self.engine,
                    connection=self.system.connection,
                )
            except Exception as exc:  # any exception out of a pull is a crash
                return Run(case, self.channel, f"CRASH ({exc!r})", said=repr(exc))
        mine = [r.to_json() for r in report.results if r.source == name]
        refused = [e for e in report.fetch_errors if e.startswith(name + ": ")]
        if refused:
            outcome = "refused"
        elif mine:
            outcome = _summarize(mine)
        else:
            outcome = "not listed"
        said = report.summary() + json.dumps(mine) + "\n".join(refused)
        return Run(case, self.channel, outcome, measure.seconds, measure.rss_mb, said)


# --- a national SFTP server that lies in its listings ----------------------------

_FAKE_ENTRIES: list[str] = []


@pytest.fixture
def lying_listing(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names added to every READDIR answer of the in-process SFTP server.

    This is the national side misbehaving (a compromised or buggy server), not
    the hub: the hub's SFTP client sees the names over the real protocol.
    """
    real = sftp_simulator._Folder.list_folder

    def list_folder(self: Any, path: str) -> Any:
        entries = real(self, path)
        if isinstance(entries, list) and path.rstrip("/").endswith("inbox"):
            for name in _FAKE_ENTRIES:
                attrs = paramiko.SFTPAttributes()
                attrs.filename = name
                attrs.st_mode = stat.S_IFREG | 0o644
                attrs.st_size = 100
                attrs.st_mtime = attrs.st_atime = 1_000_000_000
                entries.append(attrs)
        return entries

    monkeypatch.setattr(sftp_simulator._Folder, "list_folder", list_folder)
    _FAKE_ENTRIES.clear()
    return _FAKE_ENTRIES


# --- the matrix -------------------------------------------------------------------


@pytest.fixture
def api(engine: Engine) -> Iterator[Api]:
    with store.write_transaction(engine) as conn:
        token = str(tokens.create(conn, "KE", "corpus").token)
    with TestClient(create_app(engine), raise_server_exceptions=False) as client:
        yield Api(client, token)


def _remote_name(case: dict[str, Any]) -> str:
    name = str(case["name"])
    return "x" * 3996 + ".xml" if name == "long" else name


def _run_case(
    case: dict[str, Any],
    channel: str,
    ctx: Context,
    runners: dict[str, Any],
    tmp: Path,
    serial: int,
) -> Run:
    unique = f"{serial:02d}{CHANNELS.index(channel)}"
    if channel == "cli":
        path = tmp / f"{case['id']}.xml"
        if _is_huge(case):
            huge_document(path, case["payload"]["huge"])
        else:
            path.write_bytes(from_spec(case["payload"], ctx, unique))
        try:
            return runners["cli"](case["id"], path)
        finally:
            path.unlink()
    if channel == "api":
        content_type = case.get("content_type", "application/xml")
        if _is_huge(case):
            path = tmp / f"{case['id']}.xml"
            huge_document(path, case["payload"]["huge"])
            try:
                with path.open("rb") as body:
                    return runners["api"](case["id"], body, content_type)
            finally:
                path.unlink()
        body = from_spec(case["payload"], ctx, unique)
        return runners["api"](case["id"], body, content_type)

    connector: Connector = runners[channel]
    spec = case.get("national", {}).get(NATIONAL[channel], case.get("payload"))
    if "name" in case:
        name = _remote_name(case)
        data = from_spec(spec, ctx, unique)
        if channel == "sftp":
            runners["lying"].append(name)
            connector = runners["sftp-lying"]
            result = connector(case["id"], name, None)
            runners["lying"].clear()
            return result
        return connector(case["id"], name, data)
    name = connector.name_for(case["id"])
    if case.get("symlink"):
        inbox = runners[f"{channel}-inbox"]
        (inbox / name).symlink_to(ctx.canary)
        return connector(case["id"], name, None)
    return connector(case["id"], name, from_spec(spec, ctx, unique))


def _dump_database(engine: Engine) -> str:
    """Every value of every row of every table, as text."""
    parts = []
    with engine.connect() as conn:
        for table in store.metadata.sorted_tables:
            for row in conn.execute(select(table)):
                for value in row:
                    if isinstance(value, bytes | bytearray | memoryview):
                        parts.append(bytes(value).decode("latin-1"))
                    else:
                        parts.append(str(value))
    return "\n".join(parts)


def _table(runs: list[Run]) -> str:
    by = {(r.case, r.channel): r for r in runs}
    width = max(len(c["id"]) for c in CASES)
    cols = {
        ch: max(18, *(len(r.outcome) for r in runs if r.channel == ch))
        for ch in CHANNELS
    }
    lines = [
        "case".ljust(width) + " | " + " | ".join(ch.ljust(cols[ch]) for ch in CHANNELS)
    ]
    lines.append("-" * len(lines[0]))
    for case in CASES:
        cells = []
        for ch in CHANNELS:
            run = by.get((case["id"], ch))
            cells.append((run.outcome if run else "n/a").ljust(cols[ch]))
        lines.append(case["id"].ljust(width) + " | " + " | ".join(cells))
    return "\n".join(lines)


def _problems(run: Run, case: dict[str, Any]) -> list[str]:
    where = f"{run.case} via {run.channel}"
    found = []
    expected = case["expect"][run.channel]
    if run.outcome != expected:
        found.append(f"{where}: expected {expected!r}, got {run.outcome!r}")
    if run.outcome.startswith(("CRASH", "5")) or "Traceback" in run.said:
        found.append(f"{where}: crashed: {run.said[-2000:]}")
    if run.seconds > TIME_BOUND_S:
        found.append(f"{where}: took {run.seconds:.1f} s, over {TIME_BOUND_S} s")
    if run.rss_mb > RSS_BOUND_MB:
        found.append(f"{where}: peak RSS grew {run.rss_mb:.0f} MB, over {RSS_BOUND_MB}")
    return found


def test_every_case_through_every_channel(
    engine: Engine,
    db_url: str,
    api: Api,
    lying_listing: list[str],
    corpus_ctx: Context,
    recorder: Recorder,
    canary_secret: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    cli = Cli(db_url, tmp_path)
    cli.calibrate(ROOT / "examples" / "import-authorization.xml")
    runs: list[Run] = []
    with (
        national_system("ke-ppb", tmp_path / "ke") as kenya,
        national_system("ke-ppb", tmp_path / "ke-lying", sftp_kind="inprocess") as liar,
        national_system("de-bfarm", tmp_path / "de") as germany,
        national_system("ch-swissmedic", tmp_path / "ch") as switzerland,
    ):
        runners = {
            "cli": cli,
            "api": api,
            "sftp": Connector("sftp", kenya, engine),
            "sftp-lying": Connector("sftp", liar, engine),
            "lying": lying_listing,
            "filedrop": Connector("filedrop", germany, engine),
            "rest": Connector("rest", switzerland, engine),
            "sftp-inbox": tmp_path / "ke" / "sftp" / "inbox",
            "filedrop-inbox": tmp_path / "de" / "drop" / "inbox",
        }
        for serial, case in enumerate(CASES, start=1):
            for channel in _channels(case):
                runs.append(
                    _run_case(case, channel, corpus_ctx, runners, tmp_path, serial)
                )

    table = _table(runs)
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.outcome] = counts.get(run.outcome, 0) + 1
    slowest = max(runs, key=lambda r: r.seconds)
    greediest = max(runs, key=lambda r: r.rss_mb)
    with capsys.disabled():
        print(
            f"\n\nhostile corpus on {engine.dialect.name}: {len(CASES)} cases, "
            f"{len(runs)} runs"
        )
        print(table)
        print("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        print(
            f"slowest: {slowest.case} via {slowest.channel} {slowest.seconds:.2f} s; "
            f"most memory: {greediest.case} via {greediest.channel} "
            f"+{greediest.rss_mb:.0f} MB (bounds {TIME_BOUND_S:.0f} s, "
            f"{RSS_BOUND_MB:.0f} MB)"
        )

    cases = {c["id"]: c for c in CASES}
    problems = [p for run in runs for p in _problems(run, cases[run.case])]
    said = "\n".join(r.said for r in runs) + caplog.text + _dump_database(engine)
    if canary_secret in said:
        problems.append("the canary's secret was read and appears in the output")
    if recorder.paths:
        problems.append(f"the hub fetched attacker URLs: {recorder.paths}")
    # The hub's own loggers; the simulated national side may log its resets.
    errors = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR
        and r.name.startswith("i2es_hub")
        and not r.name.startswith("i2es_hub.simulators")
    ]
    if errors:
        problems.append(f"ERROR logs: {errors}")
    assert not problems, "\n".join(problems)


def test_manifest_names_every_channel_of_every_case() -> None:
    for case in CASES:
        channels = _channels(case)
        assert set(channels) <= set(CHANNELS), case["id"]
        assert set(case["expect"]) == set(channels), case["id"]
        if channels != CHANNELS:
            assert case.get("why_not"), f"{case['id']} skips channels without a reason"
    assert len({c["id"] for c in CASES}) == len(CASES)
