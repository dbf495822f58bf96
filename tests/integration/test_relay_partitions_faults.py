"""Acceptance of partitioned relays (issue 13): three ``tidings relay`` processes share
one PostgreSQL outbox while events of ~200 keys commit; one of them, chosen at random,
is SIGKILLed at a random moment and restarted, 20 times. At the consumer: every event
arrived, and the first arrivals of each key keep its commit order, on RabbitMQ and Kafka.

50,000 events by default (about 20 s per broker on the 2-core test machines);
``TIDINGS_PARTITION_TEST_EVENTS`` sets the count and ``TIDINGS_RELAY_TEST_SEED`` replays
a run's kills.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.integration.transports.conformance import collect
from tests.support import relay_app, relay_brokers
from tests.support.relay_processes import APP, ROOT, TIDINGS, environment, tidings_json
from tidings import BoundedContext
from tidings.domain.ids import uuid7
from tidings.persistence.tables import published_records
from tidings.transports import open_transport

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

EVENTS = int(os.environ.get("TIDINGS_PARTITION_TEST_EVENTS", "50000"))
KEYS = 200
RELAYS = 3
KILLS = 20


async def start_relay(env: dict[str, str]) -> asyncio.subprocess.Process:
    """``tidings relay APP`` with a 1 s lease, so partitions of a killed relay move fast."""
    return await asyncio.create_subprocess_exec(
        TIDINGS,
        "relay",
        APP,
        "--lease-ttl",
        "1",
        "--max-poll-interval",
        "0.2",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
    )


@pytest.mark.parametrize("kind", ["rabbitmq", "kafka"])
async def test_three_relays_killed_twenty_times_lose_nothing_and_keep_key_order(
    postgres_url: str, tmp_path: Path, kind: str
) -> None:
    seed = int(os.environ.get("TIDINGS_RELAY_TEST_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    kill_at = [part * EVENTS // KILLS + rng.randrange(EVENTS // KILLS) for part in range(KILLS)]
    tag = uuid7().hex[-12:]
    broker = relay_brokers.broker_url(kind, tag, tmp_path)
    context = relay_app.build(postgres_url, broker)
    env = environment(postgres_url, broker)
    killed_at: list[int] = []
    relays: list[asyncio.subprocess.Process] = []
    try:
        async with open_transport(broker) as consumer:
            await consumer.declare_subscription("meters", {relay_app.EVENT_TYPE})
            consuming = asyncio.create_task(
                collect(
                    consumer,
                    "meters",
                    {relay_app.EVENT_TYPE},
                    EVENTS,
                    timeout=240,
                )
            )
            relays = [await start_relay(env) for _ in range(RELAYS)]
            committing = asyncio.create_task(
                asyncio.to_thread(relay_app.publish_ticks, context, 0, EVENTS, keys=KEYS)
            )
            for threshold in kill_at:
                # Kills follow the relays' progress, not the consumer's: a Kafka consumer
                # joining its group may start receiving after the relays are done.
                await _until(lambda t=threshold: _relayed(context) >= t, timeout=120)
                await asyncio.sleep(rng.uniform(0, 0.25))  # publishing, confirming, marking
                victim = rng.randrange(RELAYS)
                relays[victim].send_signal(signal.SIGKILL)
                killed_at.append(await asyncio.to_thread(_relayed, context))
                await relays[victim].wait()
                relays[victim] = await start_relay(env)
            await committing
            received = await consuming
            await _until(lambda: context.outbox_count() == 0, timeout=60)
            # Balanced again once the killed relays' leases lapsed: three live owners.
            shares = await _until(lambda: _live_shares(env), timeout=30)
    finally:
        for relay in relays:
            if relay.returncode is None:
                relay.send_signal(signal.SIGTERM)
        codes = [await asyncio.wait_for(relay.wait(), timeout=30) for relay in relays]
        await context.adispose()
        await relay_brokers.remove(kind, tag, ["meters"])

    arrivals, duplicates = relay_app.check_arrivals(received, range(EVENTS))
    print(
        f"{kind}: {RELAYS} relays, SIGKILL x{KILLS} (seed {seed}): {arrivals} arrivals for "
        f"{EVENTS} events, {duplicates} duplicates; killed after {killed_at} events relayed; "
        f"partitions per relay at the end {shares}"
    )
    assert codes == [0] * RELAYS, "the relays still running stop gracefully"
    assert sorted(shares) == [4, 6, 6]


def _relayed(context: BoundedContext) -> int:
    """Events relayed so far: each marked row leaves a published record (tidings trace)."""
    with context.engine.connect() as connection:
        return int(
            connection.execute(select(func.count()).select_from(published_records)).scalar_one()
        )


def _live_shares(env: dict[str, str]) -> list[int] | None:
    """Partitions per live relay once three live relays hold all 16; else None."""
    status = tidings_json("outbox", "status", APP, env=env)
    live = [relay for relay in status["relays"] if not relay["expired"]]
    held = [len(relay["partitions"]) for relay in live]
    if len(live) == RELAYS and sum(held) == status["partitions"] and max(held) <= 6:
        return held
    return None


async def _until(probe: Callable[[], Any], timeout: float) -> Any:
    """Poll ``probe`` (run in a thread) until it returns something truthy, or time out
    (returning its last answer, for the assertions to report)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await asyncio.to_thread(probe)
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.2)
