"""Restarting the machine's PostgreSQL cluster, for tests of what survives it."""

from __future__ import annotations

import shutil
import subprocess

import pytest

needs_pg_ctlcluster = pytest.mark.skipif(
    shutil.which("pg_ctlcluster") is None,
    reason="restarting PostgreSQL needs pg_ctlcluster on this machine",
)


def restart_postgres() -> None:
    """Restart the local cluster (every connection to it breaks); blocks until it is up."""
    cluster = subprocess.run(["ls", "/etc/postgresql"], capture_output=True, text=True)
    version = cluster.stdout.split()[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        timeout=120,
        capture_output=True,
    )
