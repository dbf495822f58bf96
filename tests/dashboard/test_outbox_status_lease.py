"""``tidings outbox status`` says when the relay owner it shows holds an expired lease."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.dashboard_app import DATABASE_ENV, build_pricing, set_relay_lease
from tidings.cli.app import app

TARGET = "tests.support.dashboard_app:from_environment"


@pytest.mark.parametrize(("expires_in", "expired"), [(-5, True), (60, False)])
def test_outbox_status_reports_whether_the_relay_lease_expired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, expires_in: int, expired: bool
) -> None:
    url = f"sqlite:///{tmp_path / 'pricing.db'}"
    context = build_pricing(url)

    async def lease() -> None:
        await set_relay_lease(context, "host:7:relay", timedelta(seconds=expires_in))
        await context.adispose()

    asyncio.run(lease())
    context.dispose()
    monkeypatch.setenv(DATABASE_ENV, url)
    runner = CliRunner()
    as_json = runner.invoke(app, ["outbox", "status", TARGET, "--json"])
    assert as_json.exit_code == 0, as_json.output
    status = json.loads(as_json.output)
    assert status["relay_owner"] == "host:7:relay"
    assert status["relay_lease_expired"] is expired
    table = runner.invoke(app, ["outbox", "status", TARGET])
    assert ("STALE" in table.output) is expired


def test_dashboard_exits_2_for_a_target_it_cannot_load() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "tidings", "dashboard", "no_such_module:context"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "cannot import 'no_such_module'" in result.stderr
