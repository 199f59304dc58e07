"""A simulated national REST system in a process of its own, so a test can kill it.

It serves `i2es_hub.simulators.rest_server.build_app` on 127.0.0.1 and writes
every message it accepts to a journal file (flushed and synced before the answer
goes out), so what it received survives its own SIGKILL. Optionally under TLS.

    python tests/reliability/rest_receiver.py --port P --journal FILE [--token T]
        [--certfile CERT --keyfile KEY]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
from typing import Any

import uvicorn

from i2es_hub.simulators.rest_server import NationalRestSystem, Pushed, build_app


class Journal(list[Pushed]):
    """The list of pushed messages, also appended to a file as JSON lines."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path

    def append(self, item: Pushed) -> None:
        """Write the message's key and name to the journal, then keep it."""
        line = json.dumps({"key": item.key, "filename": item.filename})
        with open(self._path, "a", encoding="utf-8") as journal:
            journal.write(line + "\n")
            journal.flush()
            os.fsync(journal.fileno())
        super().append(item)


def main() -> None:
    """Serve until killed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--journal", required=True)
    parser.add_argument("--token")
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    args = parser.parse_args()

    system = NationalRestSystem(token=args.token)
    system.pushed = Journal(args.journal)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    tls: dict[str, Any] = {}
    if args.certfile:
        tls = {"ssl_certfile": args.certfile, "ssl_keyfile": args.keyfile}
    config = uvicorn.Config(
        build_app(system), log_level="warning", access_log=False, lifespan="off", **tls
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
