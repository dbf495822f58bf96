"""One OS process per context (``python -m tidings run``), killable for chaos."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

UNROUTED_GRACE = 2.0


class ContextProcess:
    """The relay + consumer process of one example context."""

    def __init__(self, name: str, logs: Path) -> None:
        self.name = name
        self._log_path = logs / f"{name}.log"
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self._log is None:
            self._log = self._log_path.open("ab")
        self._process = subprocess.Popen(
            [
                *(
                    sys.executable,
                    "-m",
                    "tidings",
                    "run",
                    f"examples.ecommerce.{self.name}:context",
                ),
                # Every subscription is declared before the processes start: a type still
                # unrouted after a moment has no subscriber (the reference system's stock
                # changes), and need not hold the outbox for the default 30 s.
                *("--unrouted-grace", str(UNROUTED_GRACE)),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
        )

    def kill(self) -> None:
        """SIGKILL: no goodbye, no flushing; whatever was in flight is redone."""
        if self._process is not None and self.alive:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait()
            self.kills += 1

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM and wait for a graceful exit; SIGKILL if it does not come."""
        if self._process is None:
            return
        if self.alive:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None
