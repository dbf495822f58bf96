"""A small chaos runner: SIGKILL random processes of a system and start them again.

::

    report = run_chaos(
        {"relay": ["tidings", "relay", "shop.catalog:context"],
         "consumer": ["tidings", "consume", "shop.basket:context"]},
        kills=10, seed=7, until=lambda: effects_count() == expected,
    )
    assert report.converged

Every process starts at once; then, at random intervals, one running process is killed
with SIGKILL and started again, until ``kills`` kills happened; then the runner waits
for ``until()`` (the system converged) and stops everything with SIGTERM. Bounded by
``timeout``; the same ``seed`` gives the same sequence of victims and pauses.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ChaosReport:
    """What happened: kills per process, whether ``until`` held, how long it took."""

    kills: dict[str, int] = field(default_factory=dict)
    converged: bool = False
    seconds: float = 0.0
    exit_codes: dict[str, int | None] = field(default_factory=dict)


def run_chaos(
    commands: Mapping[str, Sequence[str]],
    *,
    kills: int = 5,
    interval: tuple[float, float] = (0.2, 1.0),
    until: Callable[[], bool] = lambda: True,
    timeout: float = 120.0,
    seed: int | None = None,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> ChaosReport:
    """Run ``commands``, kill and restart them ``kills`` times, wait for ``until()``."""
    chooser = random.Random(seed)
    report = ChaosReport(kills=dict.fromkeys(commands, 0))
    started = time.monotonic()
    deadline = started + timeout
    processes = {name: _start(argv, cwd, env) for name, argv in commands.items()}
    try:
        done = 0
        while done < kills and time.monotonic() < deadline:
            time.sleep(chooser.uniform(*interval))
            victim = chooser.choice(sorted(processes))
            processes[victim].send_signal(signal.SIGKILL)
            processes[victim].wait()
            processes[victim] = _start(commands[victim], cwd, env)
            report.kills[victim] += 1
            done += 1
        while time.monotonic() < deadline:
            if until():
                report.converged = True
                break
            time.sleep(0.05)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in processes.items():
            try:
                report.exit_codes[name] = process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                report.exit_codes[name] = process.wait()
        report.seconds = time.monotonic() - started
    return report


def _start(
    argv: Sequence[str], cwd: str | Path | None, env: Mapping[str, str] | None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=None if env is None else dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
