"""A certificate that does not verify stops ``tidings relay``, ``consume`` and ``run`` at
once with exit code 2 and the TlsError's message: retrying would never succeed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import secret_app
from tests.support.tls_endpoints import Certificates

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("command", "target"),
    [("relay", "catalog"), ("consume", "basket"), ("run", "basket")],
    ids=["relay", "consume", "run"],
)
def test_a_wrong_ca_stops_the_command_with_exit_code_2(
    rabbitmq_tls_port: int, certs: Certificates, tmp_path: Path, command: str, target: str
) -> None:
    broker = f"amqps://guest:guest@127.0.0.1:{rabbitmq_tls_port}/?{certs.query(ca=certs.wrong_ca)}"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        secret_app.CATALOG_DATABASE_ENV: f"sqlite:///{tmp_path / 'catalog.db'}",
        secret_app.BASKET_DATABASE_ENV: f"sqlite:///{tmp_path / 'basket.db'}",
        secret_app.BROKER_ENV: broker,
    }
    app = f"tests.support.secret_app:{target}"
    subprocess.run(
        [sys.executable, "-m", "tidings", "db", "init", app], env=env, cwd=ROOT, check=True,
        capture_output=True, timeout=60,
    )  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "tidings", command, app],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "TLS certificate verification failed" in " ".join(done.stderr.split())
    assert time.monotonic() - started < 20  # the interpreter's start-up included
