"""Start-up: ``import tidings`` over a bare interpreter, and ``tidings --help`` wall time.

Each figure is the best of N fresh processes (the minimum is the least disturbed by a
shared machine); the import figure is the difference from ``python -c pass`` measured
in the same run, so it is the cost tidings adds. Last line: one JSON object.

    python benchmarks/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time


def best_of(command: list[str], runs: int) -> float:
    """The fastest of ``runs`` executions of ``command``, in milliseconds."""
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=os.environ.copy())
        best = min(best, time.perf_counter() - started)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    python = sys.executable
    tidings = shutil.which("tidings") or ""
    help_command = [tidings, "--help"] if tidings else [python, "-m", "tidings", "--help"]
    bare_ms = best_of([python, "-c", "pass"], runs)
    import_ms = best_of([python, "-c", "import tidings"], runs)
    help_ms = best_of(help_command, runs)
    full_ms = best_of([python, "-c", "from tidings import BoundedContext, IntegrationEvent"], runs)
    print(f"bare interpreter          {bare_ms:7.1f} ms")
    print(f"import tidings            {import_ms:7.1f} ms  (+{import_ms - bare_ms:.1f})")
    print(f"tidings --help            {help_ms:7.1f} ms")
    print(f"from tidings import BoundedContext, IntegrationEvent {full_ms:7.1f} ms")
    print(
        json.dumps(
            {
                "import_ms": round(import_ms - bare_ms, 1),
                "help_ms": round(help_ms, 1),
                "bare_ms": round(bare_ms, 1),
                "full_import_ms": round(full_ms - bare_ms, 1),
                "runs": runs,
            }
        )
    )


if __name__ == "__main__":
    main()
