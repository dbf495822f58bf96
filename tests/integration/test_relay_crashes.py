"""Guarantees 3 to 5 with relays dying or competing: no event lost, first arrivals in order.

A relay killed with SIGKILL may have sent a batch it had not marked yet: its successor
sends it again (duplicates on the wire, counted and printed here), never skips it.
Two relays on one outbox take turns through the lease; whatever the interleaving, the
first arrival of every event keeps its key's commit order.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from pathlib import Path

import pytest

from tests.integration.transports.conformance import collect
from tests.support import relay_app, relay_brokers
from tests.support.relay_processes import environment, start_runner
from tidings import BoundedContext
from tidings.contracts.cloudevents import CloudEvent
from tidings.domain.ids import uuid7
from tidings.outbox import Relay
from tidings.transports import open_transport

pytestmark = pytest.mark.slow


class Progress:
    """Distinct events received so far, with an awaitable per threshold."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self._waiters: list[tuple[int, asyncio.Event]] = []

    def __call__(self, event: CloudEvent) -> None:
        self.seen.add(event.id)
        for threshold, reached in self._waiters:
            if len(self.seen) >= threshold:
                reached.set()

    async def reach(self, threshold: int, timeout: float = 120) -> None:
        reached = asyncio.Event()
        self._waiters.append((threshold, reached))
        if len(self.seen) >= threshold:
            reached.set()
        await asyncio.wait_for(reached.wait(), timeout)


@pytest.mark.parametrize(
    ("database", "kind", "total"),
    [
        pytest.param("postgres", "sqlite", 20_000, marks=pytest.mark.postgres),
        pytest.param("postgres", "pubsub", 10_000, marks=pytest.mark.postgres),
        pytest.param("mariadb", "sqlite", 10_000, marks=pytest.mark.mariadb),
    ],
)
async def test_a_relay_killed_ten_times_mid_stream_loses_nothing_and_keeps_key_order(
    request: pytest.FixtureRequest, tmp_path: Path, database: str, kind: str, total: int
) -> None:
    database_url: str = request.getfixturevalue(f"{database}_url")
    kills = 10
    seed = int(os.environ.get("TIDINGS_RELAY_TEST_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    # One kill in each tenth of the stream, at a random point of it.
    kill_at = [part * total // kills + rng.randrange(total // kills) for part in range(kills)]
    tag = uuid7().hex[-12:]
    broker = relay_brokers.broker_url(kind, tag, tmp_path)
    context = relay_app.build(database_url, broker)
    env = environment(database_url, broker)
    progress = Progress()
    killed_at: list[int] = []
    try:
        async with open_transport(broker) as consumer:
            await consumer.declare_subscription("meters", {relay_app.EVENT_TYPE})
            committing = asyncio.create_task(
                asyncio.to_thread(relay_app.publish_ticks, context, 0, total)
            )
            consuming = asyncio.create_task(
                collect(
                    consumer,
                    "meters",
                    {relay_app.EVENT_TYPE},
                    total,
                    timeout=300,
                    on_event=progress,
                )
            )
            for threshold in kill_at:
                relay = await start_runner(env, lease_ttl=1.0)
                await progress.reach(threshold)
                # A random moment of the batch in flight: publishing, confirming, marking.
                await asyncio.sleep(rng.uniform(0, 0.25))
                relay.send_signal(signal.SIGKILL)
                await relay.wait()
                killed_at.append(len(progress.seen))
            await committing
            last = await start_runner(env, lease_ttl=1.0)
            received = await consuming
            # Everything may have arrived from a killed relay's unmarked batch: the last
            # relay still has to take the lease, send those rows again and delete them.
            await _outbox_drained(context, timeout=60)
            last.send_signal(signal.SIGTERM)
            await asyncio.wait_for(last.wait(), timeout=30)
            left = await asyncio.to_thread(context.outbox_count)
    finally:
        await context.adispose()
        await relay_brokers.remove(kind, tag, ["meters"])

    arrivals, duplicates = relay_app.check_arrivals(received, range(total))
    print(
        f"{kind}: SIGKILL x{kills} (seed {seed}) after {killed_at} events received: "
        f"{arrivals} arrivals for {total} events, {duplicates} duplicates on the wire"
    )
    assert last.returncode == 0
    assert left == 0


async def _outbox_drained(context: BoundedContext, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while await asyncio.to_thread(context.outbox_count) > 0:
        if asyncio.get_running_loop().time() > deadline:
            return  # the assertion on what is left reports it
        await asyncio.sleep(0.1)


async def test_two_relays_on_one_outbox_deliver_everything_in_key_order_while_events_commit(
    server_database_url: str,
) -> None:
    total = 10_000
    broker = f"memory://relay-pair-{os.getpid()}"
    producer = relay_app.build(server_database_url, broker)
    contexts = [relay_app.build(server_database_url, broker, create=False) for _ in range(3)]

    def relay_of(index: int) -> Relay:
        return Relay(
            contexts[index],
            batch_size=200,
            lease_ttl=1.0,
            max_idle_interval=0.2,
            complete_after_commit=False,
        )

    progress = Progress()
    try:
        async with open_transport(broker) as consumer:
            await consumer.declare_subscription("meters", {relay_app.EVENT_TYPE})
            consuming = asyncio.create_task(
                collect(
                    consumer,
                    "meters",
                    {relay_app.EVENT_TYPE},
                    total,
                    timeout=240,
                    on_event=progress,
                )
            )
            committing = asyncio.create_task(
                asyncio.to_thread(relay_app.publish_ticks, producer, 0, total, per_transaction=50)
            )
            relays = [relay_of(0), relay_of(1)]
            runs = [asyncio.create_task(relay.run()) for relay in relays]
            await progress.reach(total // 3)
            # The relay doing the work goes away; a third one joins as the new standby.
            active = max(range(2), key=lambda index: relays[index].stats.published)
            await relays[active].stop()
            await asyncio.wait_for(runs[active], timeout=30)
            relays.append(relay_of(2))
            runs.append(asyncio.create_task(relays[2].run()))
            await committing
            received = await consuming
            for relay in relays:
                await relay.stop()
            await asyncio.wait_for(asyncio.gather(*runs), timeout=30)
            left = await asyncio.to_thread(producer.outbox_count)
    finally:
        for context in (producer, *contexts):
            await context.adispose()

    arrivals, duplicates = relay_app.check_arrivals(received, range(total))
    published = [relay.stats.published for relay in relays]
    print(f"two relays: published {published}, {arrivals} arrivals, {duplicates} duplicates")
    assert published[active] > 0
    others = sum(count for index, count in enumerate(published) if index != active)
    assert others > 0, "a standby took over when the active relay stopped"
    assert sum(published) >= total
    assert left == 0
