"""The conformance suite every transport passes, against a real peer."""

from __future__ import annotations

import os
import time

import pytest

from i2es_hub.errors import PermanentTransportError, TransientTransportError
from i2es_hub.transports import OutboundMessage, RemoteFile, open_transport

from .conftest import OLD, Peer


def _doc(number: int) -> bytes:
    return f"<exportAuthorization number='EA-{number}'/>".encode()


def test_pull_fetch_and_archive(peer: Peer) -> None:
    for number in range(3):
        peer.drop(f"EA-{number}.xml", _doc(number))

    with open_transport(peer.config(), peer.connection()) as transport:
        ready = transport.list_ready()
        assert sorted(f.name for f in ready) == ["EA-0.xml", "EA-1.xml", "EA-2.xml"]

        fetched = {r.file.name: r.data for r in transport.fetch(ready)}
        assert fetched == {f"EA-{n}.xml": _doc(n) for n in range(3)}

        assert transport.archive(ready) == 3
        assert transport.list_ready() == []

    assert peer.inbox() == set()
    if peer.folders:
        assert peer.archived() == {"EA-0.xml", "EA-1.xml", "EA-2.xml"}


def test_limit_takes_the_oldest_first(peer: Peer) -> None:
    for number in range(5):
        peer.drop(f"EA-{number}.xml", _doc(number), age=1000 - number)

    with open_transport(
        peer.config(page_size=2) if peer.kind == "rest" else peer.config(),
        peer.connection(),
    ) as transport:
        ready = transport.list_ready(limit=3)

    assert [f.name for f in ready] == ["EA-0.xml", "EA-1.xml", "EA-2.xml"]


def test_repeat_after_crash_before_archive_gives_same_files(peer: Peer) -> None:
    peer.drop("EA-1.xml", _doc(1))
    peer.drop("EA-2.xml", _doc(2))

    # First run: fetched, then the hub "crashes" before it commits and archives.
    with open_transport(peer.config(), peer.connection()) as transport:
        first = {r.file.name: r.data for r in transport.fetch(transport.list_ready())}

    # Second run sees exactly the same documents and archives them.
    with open_transport(peer.config(), peer.connection()) as transport:
        ready = transport.list_ready()
        second = {r.file.name: r.data for r in transport.fetch(ready)}
        transport.archive(ready)

    assert first == second == {"EA-1.xml": _doc(1), "EA-2.xml": _doc(2)}

    # A third run finds nothing, and archiving the same files again is harmless.
    with open_transport(peer.config(), peer.connection()) as transport:
        assert transport.list_ready() == []
        assert transport.archive(ready) == 0
    if peer.folders:
        assert peer.archived() == {"EA-1.xml", "EA-2.xml"}


def test_push_delivers_whole_files_and_repeats_are_harmless(peer: Peer) -> None:
    messages = [
        OutboundMessage("msg-0001", "EA-1.xml", _doc(1)),
        OutboundMessage("msg-0002", "msg-0002-EA-2.xml", _doc(2)),
    ]
    with open_transport(peer.config(), peer.connection()) as transport:
        first = transport.push(messages)
        again = transport.push(messages)

    assert all(result.ok for result in first + again)
    # One file per message, named with its id, no temporary file left behind.
    assert peer.delivered() == {
        "msg-0001_EA-1.xml": _doc(1),
        "msg-0002-EA-2.xml": _doc(2),
    }
    if peer.kind == "rest":
        assert [result.duplicate for result in again] == [True, True]


def test_half_written_files_are_not_taken(peer: Peer) -> None:
    if not peer.folders:
        pytest.skip("REST lists only complete documents: nothing is half-written")
    peer.drop("young.xml", b"<partial", age=0)
    peer.drop(".upload-in-progress.xml", b"<partial", age=OLD)
    peer.drop("upload.xml.part", b"<partial", age=OLD)
    peer.drop("done.xml", _doc(1))

    with open_transport(peer.config(), peer.connection()) as transport:
        assert [f.name for f in transport.list_ready()] == ["done.xml"]

        # A writer that keeps an old timestamp while appending: the size moved
        # between two listings, so the file waits for one more quiet listing.
        assert peer.root is not None
        growing = peer.root / "inbox" / "young.xml"
        with open(growing, "ab") as handle:
            handle.write(b" more")
        os.utime(growing, (time.time() - OLD, time.time() - OLD))
        assert [f.name for f in transport.list_ready()] == ["done.xml"]
        assert [f.name for f in transport.list_ready()] == ["done.xml", "young.xml"]


def test_connection_dropped_mid_transfer_is_transient(peer: Peer) -> None:
    if peer.kind == "filedrop":
        pytest.skip("a local folder has no connection to drop")
    for number in range(600):
        peer.drop(f"EA-{number:04d}.xml", _doc(number))

    with open_transport(peer.config(), peer.connection()) as transport:
        ready = transport.list_ready()
        results = transport.fetch(ready)
        assert next(results).ok
        if peer.sftp is not None:
            assert peer.sftp.drop_connections() >= 1
        else:
            assert peer.rest is not None
            peer.rest.inject("truncate", count=100)
        with pytest.raises(TransientTransportError) as caught:
            for _ in results:
                pass

    message = str(caught.value)
    assert "FR/fr-" in message
    assert "retry" in message
    assert caught.value.retriable
    assert caught.value.__cause__ is not None
    # Nothing was archived: everything is still there for the next run.
    assert len(peer.inbox()) == 600


def test_hostile_names_are_refused_without_stopping_the_batch(peer: Peer) -> None:
    peer.drop("good.xml", _doc(1))
    if peer.rest is not None:
        peer.rest.add_outgoing("../../etc/evil.xml", b"<x/>")
    else:
        peer.drop("bad\nname.xml", b"<x/>")
    forged = [
        RemoteFile("../escape.xml", 4, 0.0, "../escape.xml"),
        RemoteFile("a/b.xml", 4, 0.0, "a-b"),
        RemoteFile("nul\x00.xml", 4, 0.0, "nul"),
        RemoteFile("x" * 300 + ".xml", 4, 0.0, "long"),
    ]

    with open_transport(peer.config(), peer.connection()) as transport:
        listed = transport.list_ready()
        results = list(transport.fetch(listed + forged))

    good = [r for r in results if r.ok]
    assert [(r.file.name, r.data) for r in good] == [("good.xml", _doc(1))]
    refused = [r for r in results if not r.ok]
    assert len(refused) == 5
    for result in refused:
        assert isinstance(result.error, PermanentTransportError)
        assert "refused" in str(result.error)
        assert "FR/fr-" in str(result.error)
    if peer.folders:
        assert peer.root is not None
        assert not (peer.root / "escape.xml").exists()


def test_file_over_the_size_cap_is_reported_and_left(peer: Peer) -> None:
    peer.drop("small.xml", _doc(1))
    peer.drop("huge.xml", b"<x>" + b"y" * 5000 + b"</x>")
    key = "max_response_size" if peer.kind == "rest" else "max_file_size"

    with open_transport(peer.config(**{key: 1000}), peer.connection()) as transport:
        results = {r.file.name: r for r in transport.fetch(transport.list_ready())}

    assert results["small.xml"].data == _doc(1)
    assert not results["huge.xml"].ok
    assert "1000" in str(results["huge.xml"].error)
    assert "huge.xml" in peer.inbox()
