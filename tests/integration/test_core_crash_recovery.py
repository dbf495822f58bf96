"""A process killed between commit and an after-commit handler's completion loses nothing.

The child commits a use case, then SIGKILLs itself inside the after-commit handler,
after the handler wrote its effect but before that transaction committed. The parent,
playing the restarted application, completes the pending work: the effect happens
exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support import crash_app

ROOT = Path(__file__).resolve().parents[2]


def _run_child(
    database_url: str, parcel_id: str, *, crash: bool
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(crash_app.CRASH_ENV, None)
    if crash:
        env[crash_app.CRASH_ENV] = "1"
    return subprocess.run(
        [sys.executable, "-m", "tests.support.crash_after_commit", database_url, parcel_id],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_after_commit_work_of_a_killed_process_runs_exactly_once_after_restart(
    database_url: str,
) -> None:
    child = _run_child(database_url, "parcel-1", crash=True)
    assert child.returncode == -signal.SIGKILL, child.stderr

    restarted = crash_app.build(database_url)
    try:
        assert crash_app.shipment_count(restarted, "parcel-1") == 1
        assert crash_app.notification_count(restarted, "parcel-1") == 0
        assert restarted.pending_handler_count() == 1

        assert restarted.complete_pending_handlers() == 1

        assert crash_app.notification_count(restarted, "parcel-1") == 1
        assert restarted.pending_handler_count() == 0
        assert restarted.complete_pending_handlers() == 0
        assert crash_app.notification_count(restarted, "parcel-1") == 1
    finally:
        restarted.dispose()
