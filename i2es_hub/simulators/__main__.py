"""Run the simulated national systems until interrupted, for manual trials.

``python -m i2es_hub.simulators [--sftp auto|openssh|inprocess] [--root DIR]``
starts an SFTP server and the simulated REST system on 127.0.0.1 and prints the
``AIRFLOW_CONN_...`` values and URLs to use. Ctrl-C stops both.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from pathlib import Path

from i2es_hub.simulators.rest_server import rest_server
from i2es_hub.simulators.sftp_server import sftp_server


def main() -> None:
    """Start both simulators and wait for Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m i2es_hub.simulators")
    parser.add_argument(
        "--sftp", default="auto", choices=["auto", "openssh", "inprocess"]
    )
    parser.add_argument("--root", type=Path, help="folder served over SFTP")
    args = parser.parse_args()
    # Stop cleanly on SIGTERM too, so sshd is never left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    with sftp_server(args.sftp, args.root) as sftp, rest_server() as rest:
        for folder in ("inbox", "outbox", "archive"):
            (sftp.root / folder).mkdir(exist_ok=True)
        print(f"SFTP ({sftp.kind}) on {sftp.host}:{sftp.port}, serving {sftp.root}")
        print(f"export AIRFLOW_CONN_SIM_SFTP={shlex.quote(sftp.connection_uri())}")
        print(f"REST system at {rest.base_url} (GET /outgoing, POST /incoming)")
        print("Ctrl-C to stop.")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopping")


if __name__ == "__main__":
    main()
