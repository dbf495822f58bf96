"""``tidings declare``: the consuming topology of contexts and systems, from the shell."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.relay_processes import tidings, tidings_json
from tidings.transports.sqlite import SqliteTransport


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TIDINGS_DEMO_DIR": str(tmp_path),
        "TIDINGS_DEMO_BROKER": f"sqlite:///{tmp_path / 'broker.db'}",
    }


async def test_declare_a_system_declares_every_consuming_context_and_lists_the_others(
    tmp_path: Path,
) -> None:
    env = _env(tmp_path)
    declared = tidings_json("declare", "examples.ecommerce.system:system", env=env)["declared"]

    by_context = {entry["context"]: entry for entry in declared}
    assert len(by_context) == 7
    consuming = {name for name, entry in by_context.items() if entry["event_types"]}
    assert consuming and consuming != set(by_context)  # some only publish
    for name in consuming:
        assert by_context[name]["group"] == name
        assert by_context[name]["transport"] == "sqlite"
    async with SqliteTransport(env["TIDINGS_DEMO_BROKER"]) as broker:
        groups = {status.group for status in await broker.partition_status()}
    assert groups == consuming
    # Idempotent, and readable without --json.
    again = tidings("declare", "examples.ecommerce.system:system", env=env)
    assert "nothing to declare" in again
    assert all(f"{name}: subscription" in again for name in consuming)


def test_declare_fails_with_exit_code_2_when_the_broker_is_unreachable(tmp_path: Path) -> None:
    import subprocess

    from tests.support.relay_processes import ROOT, TIDINGS

    done = subprocess.run(
        [
            str(TIDINGS),
            "declare",
            "examples.ecommerce.basket:context",
            "--broker",
            "amqp://guest:guest@127.0.0.1:1/?connect_timeout=1",
        ],
        env=_env(tmp_path),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    assert "cannot connect to RabbitMQ" in done.stderr
