"""Sharded subscriptions on NATS JetStream (``?shards=N``) against a real server.

The tests drive :class:`ShardSet` objects directly, as the consumer's leases would:
two transports are two consumer processes of one group. Every test gets a stream and
subject prefix of its own, deleted when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from tests.integration.transports import conformance
from tests.services import require
from tests.support.nats_streams import transport_on_own_stream
from tidings.contracts.cloudevents import CloudEvent
from tidings.contracts.envelope import partition_slot
from tidings.domain.ids import uuid7
from tidings.errors import ConfigurationError
from tidings.transports.base import ack_all
from tidings.transports.nats import NatsTransport
from tidings.transports.sharding import ShardSet

SHARDS = 4
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def server_url() -> str:
    return require("nats")


@pytest.fixture
def stream() -> str:
    return f"TIDINGS_SHARDS_{uuid7().hex[:12]}"


@pytest.fixture
def base_url(server_url: str, stream: str) -> str:
    return f"{server_url}?stream={stream}&subject_prefix={stream.lower()}"


@pytest.fixture
def url(base_url: str) -> str:
    return f"{base_url}&shards={SHARDS}"


@pytest.fixture
async def transport(url: str, server_url: str, stream: str) -> AsyncIterator[NatsTransport]:
    async with transport_on_own_stream(url, server_url, stream) as transport:
        yield transport


def shard_of(event: CloudEvent, count: int = SHARDS) -> int:
    assert event.subject is not None
    return partition_slot(event.subject) % count


class Reader:
    """One consumer process: reads ``subscribe_shards`` in a task, acks every batch."""

    def __init__(
        self,
        transport: NatsTransport,
        group: str,
        event_type: str,
        arrived: asyncio.Event | None = None,
    ) -> None:
        self.shards = ShardSet(transport.shard_count(group))
        self.received: list[tuple[int, CloudEvent]] = []
        # Shared by the readers of one test: a wait on one wakes up on any's arrivals.
        self._arrived = arrived or asyncio.Event()
        self._task = asyncio.create_task(self._run(transport, group, event_type))

    async def _run(self, transport: NatsTransport, group: str, event_type: str) -> None:
        batches = transport.subscribe_shards(group, {event_type}, 10, self.shards)
        async with contextlib.aclosing(batches):
            async for batch in batches:
                for delivery in batch:
                    assert delivery.shard is not None
                    self.received.append((delivery.shard, conformance.decode(delivery)))
                await ack_all(transport, batch)
                self._arrived.set()

    async def until(self, done: Callable[[], bool], timeout: float = 30) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                if self._task.done():
                    self._task.result()  # raises what stopped it
                self._arrived.clear()
                await self._arrived.wait()

    def ids(self) -> set[str]:
        return {event.id for _, event in self.received}

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@contextlib.asynccontextmanager
async def two_readers(
    transport: NatsTransport, url: str, group: str, event_type: str
) -> AsyncIterator[tuple[Reader, Reader]]:
    """Two consumer processes of ``group``, the second on a transport of its own, waking
    up on each other's arrivals; both stopped, and that transport closed, at the end."""
    other = NatsTransport(url)
    await other.connect()
    try:
        await transport.declare_subscription(group, {event_type})
        arrived = asyncio.Event()
        first = Reader(transport, group, event_type, arrived)
        second = Reader(other, group, event_type, arrived)
        try:
            yield first, second
        finally:
            await first.stop()
            await second.stop()
    finally:
        await other.close()


async def test_the_shard_count_is_the_urls_and_subjects_carry_the_shard(
    transport: NatsTransport, server_url: str, stream: str
) -> None:
    tag = uuid7().hex[:8]
    group, event_type = f"subj-{tag}", f"catalog.product.updated{tag}"
    await transport.declare_subscription(group, {event_type})
    assert transport.shard_count(group) == SHARDS
    events = conformance.make_events(12, 12, event_type, "catalog")
    await transport.publish_batch("catalog", events)
    client = await nats.connect(server_url)
    try:
        js = client.jetstream()
        prefix = stream.lower()
        for seq, event in enumerate(events, start=1):
            stored = await js.get_msg(stream, seq)
            assert stored.subject == f"{prefix}.catalog.{shard_of(event)}.{event_type}"
        consumers = {info.name for info in await js.consumers_info(stream)}
        assert consumers == {f"{group}-{shard}" for shard in range(SHARDS)}
    finally:
        await client.close()


async def test_two_processes_with_disjoint_grants_get_disjoint_shards_every_event_once(
    transport: NatsTransport, url: str
) -> None:
    tag = uuid7().hex[:8]
    group, event_type = f"split-{tag}", f"catalog.split.{tag}"
    events = conformance.make_events(200, 40, event_type, "catalog")
    async with two_readers(transport, url, group, event_type) as (first, second):
        first.shards.grant({0, 1})
        second.shards.grant({2, 3})
        for start in range(0, len(events), 50):
            await transport.publish_batch("catalog", events[start : start + 50])
        await first.until(lambda: len(first.ids() | second.ids()) >= len(events))
    assert {shard for shard, _ in first.received} <= {0, 1}
    assert {shard for shard, _ in second.received} <= {2, 3}
    for shard, event in first.received + second.received:
        assert shard == shard_of(event)
    every = [event for _, event in first.received + second.received]
    assert len(every) == len(events)  # exactly once overall
    conformance.assert_complete_and_ordered(
        [e for e in events if shard_of(e) in {0, 1}], [e for _, e in first.received]
    )
    conformance.assert_complete_and_ordered(
        [e for e in events if shard_of(e) in {2, 3}], [e for _, e in second.received]
    )


async def test_a_shard_revoked_before_the_subscription_read_it_drains_at_once(
    transport: NatsTransport,
) -> None:
    tag = uuid7().hex[:8]
    group, event_type = f"early-{tag}", f"catalog.early.{tag}"
    await transport.declare_subscription(group, {event_type})
    reader = Reader(transport, group, event_type)
    reader.shards.grant(range(SHARDS))
    reader.shards.revoke({1, 2})  # a heartbeat between the first lease and the subscription
    try:
        async with asyncio.timeout(30):
            await reader.shards.wait_drained()
        assert reader.shards.drained() == {1, 2}
    finally:
        await reader.stop()


async def test_a_revoked_shard_handed_to_another_process_continues_in_per_key_order(
    transport: NatsTransport, url: str
) -> None:
    tag = uuid7().hex[:8]
    group, event_type = f"hand-{tag}", f"catalog.hand.{tag}"
    events = conformance.make_events(400, 40, event_type, "catalog")
    moved = 2
    async with two_readers(transport, url, group, event_type) as (first, second):
        first.shards.grant(range(SHARDS))
        await transport.publish_batch("catalog", events[:200])
        await first.until(lambda: any(shard == moved for shard, _ in first.received))
        first.shards.revoke({moved})
        async with asyncio.timeout(30):
            while moved not in first.shards.drained():
                await first.shards.wait_drained()
        from_first = len(first.received)
        second.shards.grant({moved})
        await transport.publish_batch("catalog", events[200:])
        expected = {e.id for e in events}
        await first.until(lambda: len(first.ids() | second.ids()) >= len(expected))
    assert all(shard != moved for shard, _ in first.received[from_first:])
    assert {shard for shard, _ in second.received} == {moved}
    of_moved = [e for shard, e in first.received + second.received if shard == moved]
    conformance.assert_complete_and_ordered([e for e in events if shard_of(e) == moved], of_moved)


async def test_the_unacknowledged_events_of_a_sigkilled_owner_come_first_to_the_next(
    transport: NatsTransport, url: str
) -> None:
    """ack_wait stays 30 s: without restarting the consumer from its ack floor, the
    newer events would come first and the dead owner's ones only after 30 s."""
    tag = uuid7().hex[:8]
    group, event_type = f"kill-{tag}", f"catalog.kill.{tag}"
    await transport.declare_subscription(group, {event_type})
    shard = 1
    on_shard = [
        e for e in conformance.make_events(400, 200, event_type, "catalog") if shard_of(e) == shard
    ]
    older, newer = on_shard[:20], on_shard[20:40]
    await transport.publish_batch("catalog", older)
    acked = 3
    args = [str(shard), str(acked)]
    owner = subprocess.Popen(
        [sys.executable, "-m", "tests.support.nats_shard_owner", url, group, event_type, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    got: list[str] = []
    try:
        assert owner.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = await asyncio.to_thread(owner.stdout.readline)
            if not line or line.startswith("HOLDING"):
                break
            got.append(line.split()[1])
        assert line.startswith("HOLDING"), "the owner process did not get its events"
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
    assert got[:acked] == [e.id for e in older[:acked]]

    await transport.publish_batch("catalog", newer)  # flowing at once to a new owner
    heir = Reader(transport, group, event_type)
    heir.shards.grant({shard})
    unacked = older[acked:]
    try:
        await heir.until(lambda: len(heir.ids()) >= len(unacked) + len(newer))
    finally:
        await heir.stop()
    received = [event.id for _, event in heir.received]
    assert received[: len(unacked)] == [e.id for e in unacked]
    assert received[len(unacked) :] == [e.id for e in newer]
    # The restarted consumer starts at a sequence: declaring the group again keeps it.
    await transport.declare_subscription(group, {event_type})


async def test_a_restart_cut_short_resumes_from_its_holder_and_removes_it(
    transport: NatsTransport, server_url: str, stream: str
) -> None:
    """A process killed between deleting a shard's consumer and recreating it left only
    the holder: the next declaration recreates the consumer from the holder's start."""
    tag = uuid7().hex[:8]
    group, event_type = f"cut-{tag}", f"catalog.cut.{tag}"
    await transport.declare_subscription(group, {event_type})
    shard = 3
    on_shard = [
        e for e in conformance.make_events(200, 100, event_type, "catalog") if shard_of(e) == shard
    ][:10]
    await transport.publish_batch("catalog", on_shard)
    durable = f"{group}-{shard}"
    client = await nats.connect(server_url)
    try:
        js = client.jetstream()
        config = (await js.consumer_info(stream, durable)).config
        holder = ConsumerConfig(
            durable_name=f"{durable}-hold",
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=1,
            filter_subject=config.filter_subject,
        )
        await js.add_consumer(stream, holder)
        await js.delete_consumer(stream, durable)  # ... and killed here
        heir = Reader(transport, group, event_type)
        heir.shards.grant({shard})
        try:
            await heir.until(lambda: len(heir.ids()) >= len(on_shard))
        finally:
            await heir.stop()
        assert [e.id for _, e in heir.received] == [e.id for e in on_shard]
        names = {info.name for info in await js.consumers_info(stream)}
        assert f"{durable}-hold" not in names
        assert durable in names
    finally:
        await client.close()


async def test_without_a_shard_set_a_group_reads_every_shard_in_order_per_key(
    transport: NatsTransport,
) -> None:
    await conformance.check_fan_out_and_order(transport, count=2000, keys=50, batch=250)
    await conformance.check_type_filtering(transport)


async def test_subscribe_batches_without_a_shard_set_reads_every_shard(
    transport: NatsTransport,
) -> None:
    tag = uuid7().hex[:8]
    group, wanted, other = f"all-{tag}", f"catalog.all.{tag}", f"catalog.other.{tag}"
    await transport.declare_subscription(group, {wanted, other})
    events = conformance.make_events(60, 30, wanted, "catalog")
    noise = conformance.make_events(20, 20, f"catalog.unread.{tag}", "catalog")
    await transport.declare_subscription(f"noise-{tag}", {f"catalog.unread.{tag}"})
    await transport.publish_batch("catalog", noise + events)
    received: list[CloudEvent] = []
    batches = transport.subscribe_batches(group, {wanted, other}, 16)
    async with asyncio.timeout(30), contextlib.aclosing(batches):
        async for batch in batches:
            assert len(batch) <= 16
            received += [conformance.decode(delivery) for delivery in batch]
            await ack_all(transport, batch)
            if len({e.id for e in received}) >= len(events):
                break
    assert {shard_of(e) for e in received} == set(range(SHARDS))
    assert {e.type for e in received} == {wanted}
    conformance.assert_complete_and_ordered(events, received)


async def test_a_url_whose_shard_count_disagrees_with_the_stream_is_refused(
    transport: NatsTransport, base_url: str, url: str
) -> None:
    for wrong in (f"{base_url}&shards=2", base_url):
        consumer = NatsTransport(wrong)
        with pytest.raises(ConfigurationError, match=f"has {SHARDS} shard.*shards={SHARDS}"):
            await consumer.connect()
        await consumer.close()
    publisher = NatsTransport(f"{base_url}&shards=8")
    [event] = conformance.make_events(1, 1, "catalog.refused", "catalog")
    with pytest.raises(ConfigurationError, match=r"use \?shards=4"):
        await publisher.publish_batch("catalog", [event])
    await publisher.close()


async def test_a_group_deleted_by_any_url_loses_every_shard_consumer_and_the_last_the_stream(
    transport: NatsTransport, base_url: str, server_url: str, stream: str
) -> None:
    event_type = f"catalog.recounted{uuid7().hex[:8]}"
    for group in ("a", "b"):
        await transport.declare_subscription(group, {event_type})
    await transport.publish_batch("catalog", conformance.make_events(8, 8, event_type, "catalog"))
    client = await nats.connect(server_url)
    unsharded, two = NatsTransport(base_url), NatsTransport(f"{base_url}&shards=2")
    try:
        js = client.jetstream()
        # A holder consumer left by a take-over cut short goes with its group too.
        holder = ConsumerConfig(
            durable_name="a-1-hold",
            ack_policy=AckPolicy.EXPLICIT,
            filter_subject=f"{stream.lower()}.*.1.>",
        )
        await js.add_consumer(stream, holder)
        await unsharded.connect_to_delete()  # connect() would refuse the URL's count
        await unsharded.delete_subscription("a")
        consumers = {info.name for info in await js.consumers_info(stream)}
        assert consumers == {f"b-{shard}" for shard in range(SHARDS)}

        with pytest.raises(ConfigurationError, match=r"has 4 shard.*--delete"):
            await two.declare_subscription("a", {event_type})  # b still reads the stream
        await two.connect_to_delete()
        await two.delete_subscription("b")  # the last group: the stream and its count go
        await two.delete_subscription("b")  # idempotent
        with pytest.raises(nats.js.errors.NotFoundError):
            await js.stream_info(stream)

        await two.declare_subscription("a", {event_type})
        assert (await js.stream_info(stream)).config.description == "tidings shards=2"
        events = conformance.make_events(20, 10, event_type, "catalog")
        await two.publish_batch("catalog", events)
        received = await conformance.collect(two, "a", {event_type}, len(events), timeout=30)
        conformance.assert_complete_and_ordered(events, received)
        assert {shard_of(event, 2) for event in received} == {0, 1}
    finally:
        await unsharded.close()
        await two.close()
        await client.close()


async def test_a_sharded_url_on_an_unsharded_stream_is_refused(
    server_url: str, stream: str, base_url: str
) -> None:
    plain = NatsTransport(base_url)
    await plain.connect()
    try:
        sharded = NatsTransport(f"{base_url}&shards={SHARDS}")
        with pytest.raises(ConfigurationError, match=r"has 1 shard.*use \?shards=1"):
            await sharded.connect()
        await sharded.close()
    finally:
        await plain.close()
        client = await nats.connect(server_url)
        try:
            await client.jetstream().delete_stream(stream)
        finally:
            await client.close()


def test_shards_must_be_a_positive_count() -> None:
    with pytest.raises(ConfigurationError, match="shards"):
        NatsTransport("nats://127.0.0.1:4222?shards=0")
