"""Sharded subscriptions on Redis Streams (``?shards=N``) against a real Redis.

The tests drive :class:`ShardSet` objects directly, as the consumer's shard leases
would: two transports stand for two consumer processes of one group, and a
subprocess killed with SIGKILL for one that crashed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.integration.transports import conformance
from tests.services import require
from tidings.contracts.cloudevents import CloudEvent
from tidings.contracts.envelope import partition_slot
from tidings.domain.ids import uuid7
from tidings.errors import ConfigurationError
from tidings.transports import open_transport
from tidings.transports.base import Delivery, ack_all
from tidings.transports.redis import RedisTransport
from tidings.transports.sharding import ShardSet

SHARDS = 4
TYPE = "test.sharded"

Opener = Callable[..., Awaitable[RedisTransport]]


def shard_of(event: CloudEvent, shards: int = SHARDS) -> int:
    return partition_slot(event.subject or "") % shards


def seqs(events: list[CloudEvent]) -> list[int]:
    return [json.loads(event.data_json)["seq"] for event in events]


@pytest.fixture
async def stream_name() -> AsyncIterator[str]:
    """A stream name of the test's own; its shard streams and count key go afterwards."""
    name = f"tidings:test:{uuid7().hex}"
    yield name
    async with open_transport(f"{require('redis')}?stream={name}") as cleaner:
        assert isinstance(cleaner, RedisTransport)
        shards = [f"{name}:{i}" for i in range(16)]
        await cleaner.client.delete(name, f"{name}:shards", *shards)


@pytest.fixture
async def opener(stream_name: str) -> AsyncIterator[Opener]:
    """Opens transports on the test's stream (closed at the end of the test)."""
    async with contextlib.AsyncExitStack() as stack:

        async def open_one(shards: int = SHARDS, **options: object) -> RedisTransport:
            query = "".join(f"&{name}={value}" for name, value in options.items())
            url = f"{require('redis')}?stream={stream_name}&shards={shards}&block_ms=500{query}"
            transport = open_transport(url)
            assert isinstance(transport, RedisTransport)
            await transport.connect()
            stack.push_async_callback(transport.close)
            return transport

        yield open_one


@dataclass
class Reader:
    """One "consumer process": a sharded subscription read in a background task."""

    transport: RedisTransport
    group: str
    shards: ShardSet
    arrived: asyncio.Queue[Delivery] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None

    def start(self) -> Reader:
        self.task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        batches = self.transport.subscribe_shards(self.group, {TYPE}, 50, self.shards)
        async with contextlib.aclosing(batches) as reading:  # type: ignore[type-var]
            async for batch in reading:
                assert batch, "a sharded subscription yields no empty batch"
                for delivery in batch:
                    self.arrived.put_nowait(delivery)

    async def take(self, count: int, timeout: float = 15) -> list[Delivery]:
        """The next ``count`` deliveries (unacknowledged)."""
        async with asyncio.timeout(timeout):
            return [await self.arrived.get() for _ in range(count)]

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


async def test_events_go_to_the_shard_stream_of_their_key_and_the_count_is_recorded(
    opener: Opener, stream_name: str
) -> None:
    transport = await opener()
    events = conformance.make_events(40, 16, TYPE, "src")
    await transport.publish_batch("src", events)
    assert await transport.client.get(f"{stream_name}:shards") == b"4"
    assert not await transport.client.exists(stream_name)  # no unsharded stream
    for shard in range(SHARDS):
        entries: Any = await transport.client.xrange(f"{stream_name}:{shard}")
        keys = [fields[b"key"].decode() for _, fields in entries]
        expected = [e.subject for e in events if shard_of(e) == shard]
        assert keys == expected, f"shard {shard} holds its keys' events, in order"
    assert {shard_of(e) for e in events} == set(range(SHARDS))


async def test_one_shard_is_todays_single_stream_and_records_nothing(
    opener: Opener, stream_name: str
) -> None:
    transport = await opener(shards=1)
    await transport.declare_subscription("single", {TYPE})
    await transport.publish_batch("src", conformance.make_events(3, 3, TYPE, "src"))
    assert transport.shard_count("single") == 1
    assert await transport.client.xlen(stream_name) == 3
    assert not await transport.client.exists(f"{stream_name}:shards", f"{stream_name}:0")


async def test_a_disagreeing_shard_count_is_refused_and_writes_nothing(
    opener: Opener, stream_name: str
) -> None:
    first = await opener()
    await first.declare_subscription("g", {TYPE})
    assert first.shard_count("g") == SHARDS
    events = conformance.make_events(4, 4, TYPE, "src")
    for other in (await opener(shards=2), await opener(shards=1)):
        with pytest.raises(ConfigurationError, match=r"split into 4 shards.*\?shards=4"):
            await other.publish_batch("src", events)
        with pytest.raises(ConfigurationError, match=r"split into 4 shards"):
            await other.declare_subscription("g", {TYPE})
    assert not await first.client.exists(stream_name, f"{stream_name}:4")
    assert sum([await first.client.xlen(f"{stream_name}:{i}") for i in range(SHARDS)]) == 0


async def test_an_existing_unsharded_stream_refuses_a_sharded_url(opener: Opener) -> None:
    unsharded = await opener(shards=1)
    await unsharded.publish_batch("src", conformance.make_events(1, 1, TYPE, "src"))
    sharded = await opener()
    with pytest.raises(ConfigurationError, match=r"exists unsharded.*\?shards=1"):
        await sharded.declare_subscription("g", {TYPE})
    with pytest.raises(ConfigurationError, match="exists unsharded"):
        await sharded.publish_batch("src", conformance.make_events(1, 1, TYPE, "src"))
    assert not await sharded.client.exists(sharded.options.shards_key)


async def test_a_group_deleted_by_any_url_leaves_every_shard_and_the_last_takes_the_count(
    opener: Opener, stream_name: str
) -> None:
    two = await opener(shards=2)
    for group in ("a", "b"):
        await two.declare_subscription(group, {TYPE})
    await two.publish_batch("src", conformance.make_events(20, 8, TYPE, "src"))
    await (await opener(shards=1)).delete_subscription("a")  # a URL without ?shards=
    for shard in range(2):
        groups = await two.client.xinfo_groups(f"{stream_name}:{shard}")
        assert [group["name"] for group in groups] == [b"b"], shard

    three = await opener(shards=3)
    with pytest.raises(ConfigurationError, match=r"split into 2 shards.*--delete"):
        await three.declare_subscription("a", {TYPE})  # b still reads the 2 shard streams
    await three.delete_subscription("b")  # the last group: its streams and count go
    await three.delete_subscription("b")  # idempotent
    shard_keys = [f"{stream_name}:{shard}" for shard in range(3)]
    assert not await three.client.exists(f"{stream_name}:shards", stream_name, *shard_keys)

    await three.declare_subscription("a", {TYPE})
    assert await three.client.get(f"{stream_name}:shards") == b"3"
    events = conformance.make_events(30, 9, TYPE, "src")
    await three.publish_batch("src", events)
    received = await conformance.collect(three, "a", {TYPE}, len(events), timeout=30)
    conformance.assert_complete_and_ordered(events, received)
    assert {e.id for e in received} == {e.id for e in events}  # none of the old count's entries


async def test_an_unsharded_subscription_reads_every_shard_in_order_per_key(
    opener: Opener,
) -> None:
    transport = await opener()
    await transport.declare_subscription("all", {TYPE})
    events = conformance.make_events(200, 20, TYPE, "src")
    await transport.publish_batch("src", events)
    received = await conformance.collect(transport, "all", {TYPE}, len(events), timeout=30)
    conformance.assert_complete_and_ordered(events, received)
    assert len(received) == len(events)


async def test_two_processes_with_disjoint_grants_share_the_shards(opener: Opener) -> None:
    one, two = await opener(), await opener()
    await one.declare_subscription("pair", {TYPE})
    events = conformance.make_events(120, 24, TYPE, "src")
    first, second = ShardSet(SHARDS), ShardSet(SHARDS)
    first.grant([0, 1])
    second.grant([2, 3])
    readers = [Reader(one, "pair", first).start(), Reader(two, "pair", second).start()]
    try:
        await one.publish_batch("src", events)
        mine = [sum(shard_of(e) in shards.granted for e in events) for shards in (first, second)]
        got = [await reader.take(count) for reader, count in zip(readers, mine, strict=True)]
        for reader, deliveries in zip(readers, got, strict=True):
            assert {d.shard for d in deliveries} <= reader.shards.granted
            decoded = [conformance.decode(d) for d in deliveries]
            assert all(shard_of(e) == d.shard for e, d in zip(decoded, deliveries, strict=True))
            conformance.assert_complete_and_ordered(
                [e for e in events if shard_of(e) in reader.shards.granted], decoded
            )
            await ack_all(reader.transport, deliveries)
        ids = [conformance.decode(d).id for deliveries in got for d in deliveries]
        assert sorted(ids) == sorted(e.id for e in events)  # each exactly once
        await asyncio.sleep(0.3)  # nothing more comes (a short, bounded look)
        assert all(reader.arrived.empty() for reader in readers)
    finally:
        for reader in readers:
            await reader.stop()


async def test_a_revoked_shard_drains_and_its_next_owner_continues_in_order(
    opener: Opener,
) -> None:
    one, two = await opener(), await opener()
    await one.declare_subscription("handover", {TYPE})
    events = conformance.make_events(60, 12, TYPE, "src")
    moving = shard_of(events[0])
    before, after = events[:30], events[30:]
    first, second = ShardSet(SHARDS), ShardSet(SHARDS)
    first.grant(range(SHARDS))
    readers = [Reader(one, "handover", first).start(), Reader(two, "handover", second)]
    try:
        await one.publish_batch("src", before)
        held = await readers[0].take(len(before))
        # Revoked while its deliveries are outstanding: it drains once they are acked.
        first.revoke([moving])
        await asyncio.sleep(0.2)
        assert first.drained() == frozenset()
        await ack_all(one, held)
        async with asyncio.timeout(10):
            await first.wait_drained()
        assert first.drained() == {moving}
        second.grant([moving])
        readers[1].start()
        await one.publish_batch("src", after)
        staying = [e for e in after if shard_of(e) != moving]
        moved = [e for e in after if shard_of(e) == moving]
        kept = [conformance.decode(d) for d in await readers[0].take(len(staying))]
        taken = [conformance.decode(d) for d in await readers[1].take(len(moved))]
        conformance.assert_complete_and_ordered(staying, kept)  # several shards: per key
        assert len(kept) == len(staying)
        assert [e.id for e in taken] == [e.id for e in moved]  # nothing acked comes again
    finally:
        for reader in readers:
            await reader.stop()


async def test_a_nacked_sharded_delivery_comes_back(opener: Opener) -> None:
    transport = await opener()
    events = conformance.make_events(1, 1, TYPE, "src")
    shards = ShardSet(SHARDS)
    shards.grant(range(SHARDS))
    reader = Reader(transport, "nack", shards)
    await transport.declare_subscription("nack", {TYPE})
    reader.start()
    try:
        await transport.publish_batch("src", events)
        [delivery] = await reader.take(1)
        await delivery.nack()
        [again] = await reader.take(1)
        assert again.redelivered and conformance.decode(again).id == events[0].id
        assert again.shard == shard_of(events[0])
        await again.ack()
    finally:
        await reader.stop()


# A consumer process that reads one shard, acknowledges the first two deliveries and
# then waits, holding the rest, until it is killed.
_CRASHING_CONSUMER = """
import asyncio, sys
from tidings.transports import open_transport
from tidings.transports.base import ack_all
from tidings.transports.sharding import ShardSet

async def main(url, group, shard, expected):
    async with open_transport(url) as transport:
        shards = ShardSet(transport.shard_count(group))
        shards.grant([shard])
        held = []
        # Kept referenced, so nothing closes the subscription (and gives entries back).
        batches = transport.subscribe_shards(group, {"test.sharded"}, 50, shards)
        async for batch in batches:
            held += batch
            if len(held) >= expected:
                break
        await ack_all(transport, held[:2])
        print("held", len(held) - 2, flush=True)
        await asyncio.sleep(600)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
"""


async def test_a_killed_owners_unacknowledged_events_come_first_to_the_next_owner(
    opener: Opener, stream_name: str
) -> None:
    # claim_idle_ms far beyond the test: only the take-over at grant can bring them.
    survivor = await opener(claim_idle_ms=600_000)
    await survivor.declare_subscription("crash", {TYPE})
    events = conformance.make_events(48, 12, TYPE, "src")
    shard = shard_of(events[0])
    theirs = [e for e in events if shard_of(e) == shard]
    await survivor.publish_batch("src", events)
    url = f"{require('redis')}?stream={stream_name}&shards={SHARDS}&block_ms=500"
    child = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_CONSUMER, url, "crash", str(shard), str(len(theirs))],
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), timeout=60)
        assert line.split() == [b"held", str(len(theirs) - 2).encode()]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    later = conformance.make_events(12, 12, TYPE, "src")
    await survivor.publish_batch("src", later)
    newer = [e for e in later if shard_of(e) == shard]
    shards = ShardSet(SHARDS)
    shards.grant([shard])
    reader = Reader(survivor, "crash", shards).start()
    try:
        deliveries = await reader.take(len(theirs) - 2 + len(newer))
        got = [conformance.decode(d) for d in deliveries]
        assert [e.id for e in got] == [e.id for e in theirs[2:] + newer]
        assert all(d.redelivered for d in deliveries[: len(theirs) - 2])
        assert seqs(got[: len(theirs) - 2]) == seqs(theirs[2:])
    finally:
        await reader.stop()
