"""Starting relay and ``tidings`` processes for the relay acceptance tests."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support import relay_app
from tests.support.relay_runner import LEASE_TTL_ENV

ROOT = Path(__file__).resolve().parents[2]
TIDINGS = Path(sys.executable).with_name("tidings")
APP = "tests.support.relay_app:context"


def environment(database_url: str, broker_url: str, **extra: str) -> dict[str, str]:
    """The environment that points ``tests.support.relay_app:context`` at the URLs."""
    env = dict(os.environ)
    env.update(
        {
            relay_app.DATABASE_ENV: database_url,
            relay_app.BROKER_ENV: broker_url,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


async def start_runner(env: dict[str, str], lease_ttl: float = 1.0) -> asyncio.subprocess.Process:
    """``python -m tests.support.relay_runner``, once it has started relaying."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.relay_runner",
        env={**env, LEASE_TTL_ENV: str(lease_ttl)},
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
    assert line.strip() == b"relaying", f"the relay runner did not start: {line!r}"
    return process


def tidings(*args: str, env: dict[str, str], timeout: float = 60) -> str:
    """Run the ``tidings`` command; its standard output (fails on a non-zero exit)."""
    done = subprocess.run(
        [str(TIDINGS), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"tidings {' '.join(args)} exited {done.returncode}: {done}"
    return done.stdout


def tidings_json(*args: str, env: dict[str, str]) -> Any:
    return json.loads(tidings(*args, "--json", env=env))
