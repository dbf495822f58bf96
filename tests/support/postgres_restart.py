"""Restarting the machine's PostgreSQL cluster, for tests of what survives it."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator

import pytest

needs_pg_ctlcluster = pytest.mark.skipif(
    shutil.which("pg_ctlcluster") is None,
    reason="restarting PostgreSQL needs pg_ctlcluster on this machine",
)


def restart_postgres() -> None:
    """Restart the local cluster (every connection to it breaks); blocks until it is up."""
    _cluster("restart")


@contextlib.contextmanager
def postgres_stopped() -> Iterator[None]:
    """The local cluster stopped for the block, started again after it, whatever happens."""
    _cluster("stop")
    try:
        yield
    finally:
        _cluster("start")


def _cluster(action: str) -> None:
    cluster = subprocess.run(["ls", "/etc/postgresql"], capture_output=True, text=True)
    version = cluster.stdout.split()[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        check=True,
        timeout=120,
        capture_output=True,
    )
