"""The atheris fuzzer of the decoder and admission path, for a bounded time in CI.

Runs ``fuzz_admission.py`` in a subprocess (libFuzzer owns the process) from seeds of
valid events, for ``TIDINGS_FUZZ_SECONDS`` (default 15) seconds, and fails on any crash,
leaving the crashing input in the test's temporary directory. Prints the executions and
the coverage (edges) libFuzzer reports.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import in_ci

SCRIPT = Path(__file__).with_name("fuzz_admission.py")
ROOT = SCRIPT.parents[2]


def test_fuzzing_the_decoder_and_admission_finds_no_crash(tmp_path: Path) -> None:
    try:
        import atheris  # noqa: F401
    except ImportError:
        if in_ci():
            pytest.fail("atheris is part of the test extra: pip install -e '.[test]'")
        pytest.skip("atheris is not installed (pip install atheris)")
    seconds = int(os.environ.get("TIDINGS_FUZZ_SECONDS", "15"))
    corpus = tmp_path / "corpus"
    subprocess.run([sys.executable, str(SCRIPT), "--seeds", str(corpus)], check=True, cwd=ROOT)

    run = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            f"-max_total_time={seconds}",
            f"-artifact_prefix={tmp_path}/",
            "-print_final_stats=1",
            str(corpus),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )

    output = run.stdout + run.stderr
    assert run.returncode == 0, f"the fuzzer found a crash:\n{output[-6000:]}"
    done = re.search(r"#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+)", output)
    assert done is not None, output[-3000:]
    executions, coverage, features = (int(group) for group in done.groups())
    print(f"fuzzing: {executions} executions, cov {coverage} edges, ft {features} features")
    assert executions > 1000
