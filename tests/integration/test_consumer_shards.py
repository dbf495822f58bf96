"""Sharded consumers on the memory broker (``memory://?shards=N``), the reference
sharded transport: the consumer processes of one group lease the shards in the
context's database (SQLite file and PostgreSQL), each reads only its own, and every
hand-over (a consumer joining late, one stopped mid-stream, one killed) keeps every
event handled once, in per-key order, with the shards balanced."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, select

from tests.support import consumer_app
from tests.support.consumer_infra import (
    effects_by_product,
    new_tag,
    postgres_database,
    price_changed,
    wait_until,
)
from tests.support.relay_processes import ROOT, TIDINGS
from tidings import BoundedContext
from tidings.consumer import Consumer
from tidings.consumer.shard_leases import ShardLeases, rebalance
from tidings.contracts.cloudevents import decode_structured
from tidings.contracts.envelope import partition_slot
from tidings.errors import ConfigurationError
from tidings.persistence.tables import consumer_shards
from tidings.transports.base import Delivery, ack_all
from tidings.transports.memory import MemoryTransport
from tidings.transports.sharding import ShardSet

SHARDS = 6
KEYS = 24
TTL = 1.5  # heartbeats every 0.5 s: hand-overs within a second or two


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'basket.db'}"
        return
    with postgres_database(new_tag()) as url:
        yield url


@pytest.fixture
def broker_url() -> Iterator[str]:
    url = f"memory://shards-{new_tag()}?shards={SHARDS}&prefetch=16"
    yield url
    MemoryTransport.discard_broker(url)


@pytest.fixture
async def basket(database_url: str, broker_url: str) -> AsyncIterator[BoundedContext]:
    context = consumer_app.build_basket(database_url, broker_url, f"basket_{new_tag()}")
    yield context
    await context.adispose()


class Publisher:
    """Publishes round after round (``seq`` 0, 1, 2, ... of every key) in the
    background until stopped, so that every hand-over happens mid-stream."""

    def __init__(self, url: str) -> None:
        self.transport = MemoryTransport(url)
        self.rounds = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _publish(self) -> None:
        await self.transport.connect()
        while not self._stop.is_set() and self.rounds < 2_000:
            batch = [price_changed(f"product-{key}", self.rounds) for key in range(KEYS)]
            await self.transport.publish_batch("catalog", batch)
            self.rounds += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 0.02)

    def start(self) -> None:
        self._task = asyncio.create_task(self._publish())

    async def finish(self) -> int:
        """Stop; the rounds published."""
        self._stop.set()
        if self._task is not None:
            await self._task
        return self.rounds


class Group:
    """Consumers of one group, each on its own transport (a process each)."""

    def __init__(self, context: BoundedContext, url: str) -> None:
        self.context, self.url = context, url
        self.running: dict[Consumer, asyncio.Task[None]] = {}

    def start(self) -> Consumer:
        consumer = Consumer(self.context, MemoryTransport(self.url), shard_lease_ttl=TTL)
        self.running[consumer] = asyncio.create_task(consumer.run())
        return consumer

    async def stop(self, consumer: Consumer) -> None:
        await consumer.stop()
        await asyncio.wait_for(self.running.pop(consumer), 30)

    async def stop_all(self) -> None:
        for consumer in list(self.running):
            await self.stop(consumer)

    def handled(self) -> int:
        return sum(consumer.stats.handled for consumer in self.running)

    def balanced(self, *consumers: Consumer) -> bool:
        """Each holds its fair share, nothing in excess, every shard read by one."""
        owned = [_owned(consumer) for consumer in consumers]
        share = -(-SHARDS // len(consumers))
        return (
            all(len(mine) in (share, share - 1) for mine in owned)
            and sum(len(mine) for mine in owned) == SHARDS
            and len(frozenset().union(*owned)) == SHARDS
            and not any(_draining(consumer) for consumer in consumers)
        )


def _owned(consumer: Consumer) -> frozenset[int]:
    leases = consumer.shards.leases
    return frozenset() if leases is None else leases.shards.granted


def _owner(consumer: Consumer) -> str:
    assert consumer.shards.leases is not None
    return consumer.shards.leases.owner


def _draining(consumer: Consumer) -> frozenset[int]:
    leases = consumer.shards.leases
    return frozenset() if leases is None else leases.shards.draining


def _in_order(context: BoundedContext, rounds: int) -> None:
    effects = effects_by_product(context.engine)
    assert effects == {f"product-{key}": list(range(rounds)) for key in range(KEYS)}


async def test_consumers_joining_late_and_stopping_mid_stream_share_the_shards_in_order(
    basket: BoundedContext, broker_url: str
) -> None:
    group = Group(basket, broker_url)
    publisher = Publisher(broker_url)
    try:
        first, second = group.start(), group.start()
        await wait_until(lambda: group.balanced(first, second), timeout=60, what="3 + 3")
        publisher.start()
        await wait_until(lambda: publisher.rounds >= 10, what="a stream under way")

        third = group.start()  # joins late: the others hand shards over mid-stream
        joined = publisher.rounds
        await wait_until(lambda: group.balanced(first, second, third), timeout=60, what="2+2+2")
        await wait_until(lambda: third.stats.handled > 0, what="the third's first events")

        await group.stop(first)  # stopped mid-stream: its leases are released at once
        stopped = publisher.rounds
        await wait_until(lambda: group.balanced(second, third), timeout=10, what="3 + 3 again")
        await wait_until(lambda: publisher.rounds >= stopped + 10, what="more of the stream")
        assert stopped > joined, "the stream went on during the hand-overs"
        rounds = await publisher.finish()
        total = rounds * KEYS
        await wait_until(lambda: group.handled() + first.stats.handled == total, what="all")
    finally:
        await publisher.finish()
        await group.stop_all()
    _in_order(basket, rounds)  # read once they stopped: no lock waits on the SQLite file
    assert not any(_owned(c) for c in (first, second, third)), "released when stopped"


async def test_a_killed_consumer_s_shards_go_to_the_others_once_its_leases_expired(
    basket: BoundedContext, broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = Group(basket, broker_url)
    publisher = Publisher(broker_url)
    try:
        victim, survivor = group.start(), group.start()
        await wait_until(lambda: group.balanced(victim, survivor), timeout=60, what="3 + 3")
        publisher.start()
        await wait_until(lambda: victim.stats.handled > 0, what="the victim at work")

        # As if killed: its leases and membership are never given back (the broker
        # takes back what it held unacknowledged, as on a lost connection).
        async def no_release() -> None:
            pass

        assert victim.shards.leases is not None
        monkeypatch.setattr(victim.shards.leases, "release_all", no_release)
        await group.stop(victim)
        killed = asyncio.get_running_loop().time()
        await wait_until(lambda: len(_owned(survivor)) == SHARDS, timeout=60, what="all six")
        assert asyncio.get_running_loop().time() - killed > TTL / 3, "only once expired"
        rounds = await publisher.finish()
        total = rounds * KEYS
        await wait_until(lambda: survivor.stats.handled + victim.stats.handled == total, what="all")
    finally:
        await publisher.finish()
        await group.stop_all()
    _in_order(basket, rounds)


async def test_another_shard_count_is_refused_while_live_consumers_hold_shards(
    basket: BoundedContext, broker_url: str
) -> None:
    """The group's consumers ran with 4 shards and one still holds them: a consumer of
    the 6-shard topology refuses to start, saying to stop them first."""

    def leased_by_another(connection: Connection) -> None:
        rebalance(connection, basket.consumer_group, "old:1:consumer", 30.0, 4)

    async with basket.async_engine.begin() as connection:
        await connection.run_sync(leased_by_another)
    consumer = Consumer(basket, MemoryTransport(broker_url), shard_lease_ttl=TTL)
    with pytest.raises(ConfigurationError, match="stop every consumer of the group"):
        await asyncio.wait_for(consumer.run(), 30)


async def test_consume_status_shows_who_reads_which_shard(
    basket: BoundedContext, broker_url: str
) -> None:
    group = Group(basket, broker_url)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        consumer_app.DATABASE_ENV: basket.database_url,
        consumer_app.BROKER_ENV: broker_url,
        consumer_app.NAME_ENV: basket.name,
    }
    command = [str(TIDINGS), "consume", "tests.support.consumer_app:context", "--status"]

    def status(*extra: str) -> str:
        done = subprocess.run(
            [*command, *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return str(done.stdout)

    try:
        first, second = group.start(), group.start()
        await wait_until(lambda: group.balanced(first, second), timeout=60, what="3 + 3")
        shown = json.loads(await asyncio.to_thread(status, "--json"))
        assert (shown["group"], shown["shards"]) == (basket.name, SHARDS)
        held = {c["owner"]: (sorted(c["shards"]), c["expired"]) for c in shown["consumers"]}
        assert held == {_owner(c): (sorted(_owned(c)), False) for c in (first, second)}
        text = await asyncio.to_thread(status)
        assert f"shards of {basket.name}: {SHARDS}" in text
    finally:
        await group.stop_all()


# -- the memory broker's sharded subscriptions, driven through ShardSets directly ----------
def _read(batch: list[Delivery]) -> list[tuple[str, int, int]]:
    """(key, seq, shard) of each delivery; the shard is the key's slot modulo N."""
    read = []
    for delivery in batch:
        event = decode_structured(delivery.body)
        assert event.subject is not None and delivery.shard is not None
        assert delivery.shard == partition_slot(event.subject) % SHARDS
        read.append((event.subject, json.loads(event.data_json)["seq"], delivery.shard))
    return read


async def _read_all(
    transport: MemoryTransport, batches: AsyncIterator[list[Delivery]], count: int
) -> list[tuple[str, int, int]]:
    """``count`` deliveries, acknowledged as they come."""
    read: list[tuple[str, int, int]] = []
    while len(read) < count:
        batch = await asyncio.wait_for(anext(batches), 5)
        read += _read(batch)
        await ack_all(transport, batch)
    return read


async def test_memory_shards_are_read_where_granted_and_handed_over_in_order() -> None:
    url = f"memory://shards-{new_tag()}?shards={SHARDS}"
    group, types = "shardgroup", [consumer_app.PRICE_CHANGED]
    producer, left_transport, right_transport = (MemoryTransport(url) for _ in range(3))
    for transport in (producer, left_transport, right_transport):
        await transport.connect()
    await producer.declare_subscription(group, types)
    assert producer.shard_count(group) == SHARDS
    other = MemoryTransport(url.replace(f"shards={SHARDS}", "shards=4"))
    await other.connect()
    with pytest.raises(ConfigurationError, match=f"shards={SHARDS}"):
        await other.declare_subscription(group, types)

    left, right = ShardSet(SHARDS), ShardSet(SHARDS)
    left.grant([0, 1, 2])
    right.grant([3, 4, 5])
    from_left = left_transport.subscribe_shards(group, types, 50, left)
    from_right = right_transport.subscribe_shards(group, types, 50, right)
    keys = [f"k{n}" for n in range(30)]
    shard_of = {key: partition_slot(key) % SHARDS for key in keys}
    on_left = sum(1 for key in keys if shard_of[key] < 3)
    try:
        await producer.publish_batch("catalog", [price_changed(key, 0) for key in keys])
        a = await _read_all(left_transport, from_left, on_left)
        b = await _read_all(right_transport, from_right, len(keys) - on_left)
        assert {shard for _, _, shard in a} <= {0, 1, 2}
        assert {shard for _, _, shard in b} <= {3, 4, 5}
        assert sorted(key for key, _, _ in a + b) == sorted(keys), "each exactly once"

        # right gives shard 3 back: drained only once its deliveries are acknowledged.
        moved = [key for key in keys if shard_of[key] == 3]
        assert moved, "some key of shard 3"
        await producer.publish_batch("catalog", [price_changed(key, 1) for key in moved])
        held = await asyncio.wait_for(anext(from_right), 5)
        assert {key for key, _, _ in _read(held)} <= set(moved)
        right.revoke([3])
        waiting = asyncio.ensure_future(anext(from_right))  # sees the revocation
        assert right.drained() == frozenset(), "its deliveries are still outstanding"
        held_count = len(held)
        await ack_all(right_transport, held)
        await asyncio.wait_for(right.wait_drained(), 5)  # stopped, and nothing outstanding
        assert right.drained() == {3}
        await producer.publish_batch("catalog", [price_changed(key, 2) for key in moved])
        left.grant([3])
        rest = await _read_all(left_transport, from_left, 2 * len(moved) - held_count)
        seqs = {key: [seq for k, seq, _ in rest if k == key] for key in moved}
        assert all(seq == sorted(seq) and seq[-1] == 2 for seq in seqs.values()), "in order"
        assert not waiting.done(), "right reads nothing of shard 3 any more"
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await waiting
    finally:
        for batches in (from_left, from_right):
            with contextlib.suppress(RuntimeError):
                await batches.aclose()  # type: ignore[attr-defined]
        for transport in (producer, left_transport, right_transport, other):
            await transport.close()
        MemoryTransport.discard_broker(url)


async def test_the_lease_loop_outlives_a_database_that_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed heartbeat is logged and tried again; the loop does not end."""
    context = BoundedContext("leases", database_url=f"sqlite:///{tmp_path / 'leases.db'}")
    context.create_tables()
    leases = ShardLeases(context.async_engine, group="g", count=SHARDS, ttl=TTL)
    loop = asyncio.create_task(leases.run())
    try:
        await wait_until(lambda: leases.shards.granted == set(range(SHARDS)), what="all")
        # Through the async engine: a blocking call would hold the loop while the lease
        # loop holds SQLite's write lock.
        async with context.async_engine.begin() as connection:
            await connection.run_sync(consumer_shards.drop)  # every heartbeat fails now
        await wait_until(lambda: "heartbeat failed" in caplog.text, what="a logged failure")
        assert not loop.done()
        async with context.async_engine.begin() as connection:
            await connection.run_sync(consumer_shards.create)
        await wait_until(lambda: _held(context), what="leases taken again")
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        await context.adispose()


async def _held(context: BoundedContext) -> bool:
    """Every shard leased again."""
    async with context.async_engine.connect() as connection:
        rows = await connection.execute(
            select(consumer_shards.c.shard_no).where(consumer_shards.c.owner.is_not(None))
        )
        return len(rows.all()) == SHARDS
