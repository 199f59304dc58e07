"""SFTP transport speed against OpenSSH's own ``sftp`` client, same server, same run.

Pulls and pushes 2,000 small (~2 KB) files through the hub's SFTP transport and
through ``sftp -b`` (key auth, ``StrictHostKeyChecking=yes``), against a
throw-away OpenSSH sshd on loopback. A naive one-file-at-a-time paramiko loop is
measured for context. Each figure is the median of several rounds and includes
connecting and logging in. Results go to ``bench/results/sftp.json``.

Run: ``.venv/bin/python bench/sftp_bench.py [--files N] [--rounds R]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from io import StringIO
from pathlib import Path

import paramiko

from i2es_hub.connections import parse_connection
from i2es_hub.simulators.sftp_server import SftpServer, sftp_server, sshd_available
from i2es_hub.transports import OutboundMessage, SftpConfig
from i2es_hub.transports.sftp import open_sftp, parse_host_key

RESULTS = Path(__file__).resolve().parent / "results" / "sftp.json"
TARGET = 1.5


def _median_seconds(run: Callable[[int], None], rounds: int) -> float:
    times = []
    for index in range(rounds):
        started = time.perf_counter()
        run(index)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


class Bench:
    def __init__(self, server: SftpServer, scratch: Path, files: int) -> None:
        self.server = server
        self.scratch = scratch
        self.count = files
        self.names = [f"EA-{i:05d}.xml" for i in range(files)]
        self.payloads = {
            name: (f"<doc n='{i}'>".encode() + os.urandom(1000).hex().encode()[:2020])
            for i, name in enumerate(self.names)
        }
        inbox = server.root / "inbox"
        inbox.mkdir()
        old = time.time() - 3600
        for name, data in self.payloads.items():
            (inbox / name).write_bytes(data)
            os.utime(inbox / name, (old, old))

        # OpenSSH client files: known_hosts with the pinned key, the client key.
        self.known_hosts = scratch / "known_hosts"
        self.known_hosts.write_text(
            f"[{server.host}]:{server.port} {server.host_key}\n"
        )
        self.key_file = scratch / "id_ed25519"
        self.key_file.write_text(server.client_private_key)
        self.key_file.chmod(0o600)
        self.local = scratch / "local"
        self.local.mkdir()
        for name, data in self.payloads.items():
            (self.local / name).write_bytes(data)

        self.connection = parse_connection("bench_sftp", server.connection_uri())

    # --- OpenSSH reference --------------------------------------------------

    def _sftp_batch(self, lines: list[str]) -> None:
        batch = self.scratch / "batch"
        batch.write_text("".join(line + "\n" for line in lines))
        subprocess.run(
            [
                "sftp",
                "-q",
                "-b",
                str(batch),
                "-P",
                str(self.server.port),
                "-i",
                str(self.key_file),
                "-o",
                f"UserKnownHostsFile={self.known_hosts}",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                f"{self.server.username}@{self.server.host}",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def openssh_pull(self, round_: int) -> None:
        target = self.scratch / f"got-openssh-{round_}"
        target.mkdir()
        self._sftp_batch([f"get inbox/{name} {target}/" for name in self.names])
        assert len(os.listdir(target)) == self.count

    def openssh_push(self, round_: int) -> None:
        folder = self._outbox(f"openssh-{round_}")
        self._sftp_batch([f"put {self.local}/{name} {folder}/" for name in self.names])

    # --- the hub's transport ------------------------------------------------

    def _config(self, outbox: str) -> SftpConfig:
        return SftpConfig.from_mapping(
            "bench",
            "FR",
            {
                "conn_id": "bench_sftp",
                "inbox": "inbox",
                "outbox": outbox,
                "after_pull": "delete",
                "min_age": 0,
            },
        )

    def transport_pull(self, round_: int) -> None:
        with open_sftp(self._config("inbox"), self.connection) as transport:
            got = {r.file.name: r.data for r in transport.fetch(transport.list_ready())}
        assert got == self.payloads

    def transport_push(self, round_: int) -> None:
        folder = self._outbox(f"transport-{round_}")
        messages = [
            OutboundMessage(f"m{i:05d}", name, self.payloads[name])
            for i, name in enumerate(self.names)
        ]
        with open_sftp(self._config(folder), self.connection) as transport:
            results = transport.push(messages)
        assert all(result.ok for result in results)
        assert len(os.listdir(self.server.root / folder)) == self.count

    # --- naive paramiko loop, for context -------------------------------------

    def _naive_client(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        pinned = parse_host_key(self.server.host_key, "bench")
        name = f"[{self.server.host}]:{self.server.port}"
        client.get_host_keys().add(name, pinned.get_name(), pinned)
        key = paramiko.Ed25519Key.from_private_key(
            StringIO(self.server.client_private_key)
        )
        client.connect(
            self.server.host,
            self.server.port,
            self.server.username,
            pkey=key,
            look_for_keys=False,
            allow_agent=False,
        )
        return client

    def naive_pull(self, round_: int) -> None:
        with self._naive_client() as client, client.open_sftp() as sftp:
            got = {}
            for name in self.names:
                with sftp.open(f"inbox/{name}") as remote:
                    got[name] = remote.read()
        assert got == self.payloads

    def naive_push(self, round_: int) -> None:
        folder = self._outbox(f"naive-{round_}")
        with self._naive_client() as client, client.open_sftp() as sftp:
            for name in self.names:
                with sftp.open(f"{folder}/{name}", "wb") as remote:
                    remote.write(self.payloads[name])

    def _outbox(self, label: str) -> str:
        folder = f"outbox-{label}"
        (self.server.root / folder).mkdir()
        return folder


def _figure(name: str, value: float, reference: str, reference_value: float) -> dict:
    return {
        "name": name,
        "value": round(value, 4),
        "unit": "s",
        "reference": reference,
        "reference_value": round(reference_value, 4),
        "ratio": round(value / reference_value, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    if not sshd_available() or shutil.which("sftp") is None:
        print("needs OpenSSH's sshd and sftp client: install openssh-server/client")
        return 2

    with tempfile.TemporaryDirectory(prefix="i2es-bench-") as scratch_dir:
        scratch = Path(scratch_dir)
        with sftp_server("openssh", scratch / "served") as server:
            bench = Bench(server, scratch, args.files)
            rounds = args.rounds
            pull_ref = _median_seconds(bench.openssh_pull, rounds)
            pull = _median_seconds(bench.transport_pull, rounds)
            pull_naive = _median_seconds(bench.naive_pull, rounds)
            push_ref = _median_seconds(bench.openssh_push, rounds)
            push = _median_seconds(bench.transport_push, rounds)
            push_naive = _median_seconds(bench.naive_push, rounds)

    n = args.files
    ref_get = f"OpenSSH sftp -b get, {n} files, same sshd"
    ref_put = f"OpenSSH sftp -b put, {n} files, same sshd"
    figures = [
        _figure(f"sftp transport pull {n} x 2 KB", pull, ref_get, pull_ref),
        _figure(f"sftp transport push {n} x 2 KB", push, ref_put, push_ref),
        _figure(
            f"naive paramiko pull {n} x 2 KB (context)", pull_naive, ref_get, pull_ref
        ),
        _figure(
            f"naive paramiko push {n} x 2 KB (context)", push_naive, ref_put, push_ref
        ),
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")

    for figure in figures:
        value, reference = figure["value"], figure["reference_value"]
        print(
            f"{figure['name']:<42} {value:7.3f} s   "
            f"reference {reference:7.3f} s   ratio {figure['ratio']:.2f}"
        )
    print(f"target: transport ratio <= {TARGET}; results in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
