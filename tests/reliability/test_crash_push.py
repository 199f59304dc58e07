"""Push with the receiving server killed mid-push, restarted, and pushed again.

REST: the simulated national system runs in its own process and journals what
it accepts before answering; a watcher SIGKILLs it once a random number of
messages has arrived. SFTP: a real OpenSSH server whose session processes are
SIGKILLed at a random moment. After the restart, pushes run until nothing is
due. Delivery is at-least-once with stable ids: the receiver may see a message
id twice, but the distinct ids it holds must be exactly the deliveries, and no
delivery may be left pending.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import secrets
import threading
import time
from collections import Counter
from pathlib import Path

from lxml import etree
from sqlalchemy.engine import Engine

from i2es_hub import store
from i2es_hub.connections import parse_connection
from i2es_hub.exchange import push
from i2es_hub.simulators.sftp_server import free_port, sftp_server
from tests.reliability.support import (
    connector_for,
    delivery_states,
    ingest_addressed_to,
    journal_keys,
    kill_group,
    report,
    rest_receiver,
    setting,
)

TRIALS = setting("PUSH_TRIALS", 2, 20)
MESSAGES = setting("PUSH_MESSAGES", 150, 1000)
LATER = dt.timedelta(hours=7)  # past any backoff: retrying deliveries are due


def _push_until_done(connector, engine: Engine, connection) -> int:  # noqa: ANN001
    """Push with the clock moved on until nothing is due; return the rounds."""
    for rounds in range(1, 200):
        result = push(
            connector, engine, connection=connection, now=store.utcnow() + LATER
        )
        if result.due == 0:
            return rounds
    raise AssertionError("deliveries still due after 200 pushes")


def test_rest_receiver_killed_mid_push(
    engine: Engine, tmp_path: Path, seed: int
) -> None:
    token = secrets.token_urlsafe(12)
    port = free_port()
    connector = connector_for(
        "ch-swissmedic",
        tmp_path,
        base_url=f"http://127.0.0.1:{port}",
        backoff=0.01,
        max_backoff=0.1,
        max_attempts=2,
        timeout=5,
        connect_timeout=2,
    )
    connection = parse_connection(
        connector.connection_id or "ch",
        json.dumps({"conn_type": "http", "extra": {"token": token}}),
    )
    journal = tmp_path / "journal.jsonl"
    totals = Counter[str]()
    for trial in range(TRIALS):
        rng = random.Random(seed + trial)
        ingest_addressed_to(engine, "CH", MESSAGES, prefix=f"R{trial:02d}")
        before = len(journal_keys(journal))
        kill_after = before + rng.randint(1, MESSAGES)
        log_path = tmp_path / "receiver.log"

        with rest_receiver(port, journal, token, log_path) as receiver:

            def watch(receiver=receiver, goal=kill_after) -> None:  # noqa: ANN001
                while receiver.poll() is None and len(journal_keys(journal)) < goal:
                    time.sleep(0.005)
                kill_group(receiver)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            first = push(connector, engine, connection=connection)
            while receiver.poll() is None and first.due and not first.error:
                first = push(connector, engine, connection=connection)
            watcher.join(timeout=60)
        taken_at_kill = len(journal_keys(journal)) - before

        with rest_receiver(port, journal, token, log_path):
            rounds = _push_until_done(connector, engine, connection)

        states = delivery_states(engine, "CH")
        keys = journal_keys(journal)
        repeats = len(keys) - len(set(keys))
        assert set(keys) == set(states), "receiver ids differ from the deliveries"
        assert Counter(states.values()) == {"delivered": len(states)}
        report(
            "push-rest-receiver-killed",
            trial=trial,
            seed=seed + trial,
            killed_after=f"{taken_at_kill} received in this trial",
            deliveries=len(states),
            distinct_ids=len(set(keys)),
            repeats_same_id=repeats,
            pending=0,
            losses=0,
            rounds=rounds,
        )
        totals.update(trials=1, messages=MESSAGES, repeats_same_id=repeats)
    report("push-rest-receiver-killed total", **totals, losses=0, duplicates=0)


def test_sftp_server_sessions_killed_mid_push(
    engine: Engine, tmp_path: Path, seed: int
) -> None:
    root = tmp_path / "sftp"
    for folder in ("inbox", "outbox", "inbox/archive"):
        (root / folder).mkdir(parents=True)
    totals = Counter[str]()
    with sftp_server("auto", root) as server:
        connector = connector_for(
            "ke-ppb",
            tmp_path,
            inbox="inbox",
            outbox="outbox",
            archive_dir="inbox/archive",
            min_age=0,
            timeout=5,
            connect_timeout=5,
        )
        connection = parse_connection(
            connector.connection_id or "ke", server.connection_uri()
        )
        outbox = root / "outbox"
        for trial in range(TRIALS):
            rng = random.Random(seed + trial)
            ingest_addressed_to(
                engine, "KE", MESSAGES, prefix=f"S{trial:02d}", issuer="DE"
            )
            goal = len(list(outbox.iterdir())) + rng.randint(0, MESSAGES)
            cut = {"sessions": 0}

            def watch(goal: int = goal, cut: dict[str, int] = cut) -> None:
                deadline = time.monotonic() + 30
                while (
                    len(list(outbox.iterdir())) < goal and time.monotonic() < deadline
                ):
                    time.sleep(0.002)
                cut["sessions"] = server.drop_connections()

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            first = push(connector, engine, connection=connection)
            watcher.join(timeout=60)
            rounds = _push_until_done(connector, engine, connection)

            states = delivery_states(engine, "KE")
            finals = [p for p in outbox.iterdir() if not p.name.startswith(".")]
            temporaries = len(list(outbox.iterdir())) - len(finals)
            ids = Counter(next(i for i in states if i in p.name) for p in finals)
            for path in finals:
                etree.fromstring(path.read_bytes())  # whole, never a partial file
            assert set(ids) == set(states)
            assert max(ids.values()) == 1  # the name carries the id: one file each
            assert Counter(states.values()) == {"delivered": len(states)}
            report(
                "push-sftp-sessions-killed",
                trial=trial,
                seed=seed + trial,
                first_push=first.summary(),
                sessions_killed=cut["sessions"],
                deliveries=len(states),
                files=len(finals),
                leftover_temporary_files=temporaries,
                pending=0,
                losses=0,
                duplicates=0,
                rounds=rounds,
            )
            totals.update(trials=1, messages=MESSAGES)
    report(
        f"push-sftp-sessions-killed total ({server.kind})",
        **totals,
        losses=0,
        duplicates=0,
    )
