"""Run every benchmark (``make bench``): each writes bench/results/<name>.json.

Name benchmarks on the command line to run only those, e.g.
``python -m bench ingest ledger``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    found = sorted(p.stem.removesuffix("_bench") for p in HERE.glob("*_bench.py"))
    chosen = argv or found
    unknown = sorted(set(chosen) - set(found))
    if unknown:
        print(
            f"no benchmark named {', '.join(unknown)}; choose from {', '.join(found)}"
        )
        return 2
    failed = []
    for name in chosen:
        print(f"== {name}", flush=True)
        result = subprocess.run(
            [sys.executable, "-m", f"bench.{name}_bench"], cwd=HERE.parent
        )
        if result.returncode:
            failed.append(name)
    if failed:
        print(f"benchmarks that failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
