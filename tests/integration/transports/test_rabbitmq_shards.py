"""Sharded RabbitMQ subscriptions (``?shards=N``) against a real broker.

The tests drive :class:`ShardSet` objects directly, as the consumer's leases would:
two transports stand for two consumer processes of one group; a third, in a
subprocess, is SIGKILLed while it holds unacknowledged deliveries. Every test uses an
exchange and groups of its own and deletes them when it ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import replace
from typing import Any

import aio_pika
import aiormq.exceptions
import pytest

from tests.integration.transports import conformance
from tests.services import require
from tidings.contracts.cloudevents import CloudEvent
from tidings.contracts.envelope import partition_slot
from tidings.domain.ids import uuid7
from tidings.errors import ConfigurationError
from tidings.transports.base import Delivery, ack_all
from tidings.transports.rabbitmq import RabbitMQTransport
from tidings.transports.rabbitmq_options import BUCKETS
from tidings.transports.sharding import ShardSet

TIMEOUT = 30.0


def url_of(broker_url: str, exchange: str, **options: object) -> str:
    query = "&".join(f"{name}={value}" for name, value in {"exchange": exchange, **options}.items())
    return f"{broker_url}?{query}"


@pytest.fixture
def broker_url() -> str:
    return require("rabbitmq")


@pytest.fixture
def tag() -> str:
    return uuid7().hex[:12]


@pytest.fixture
async def opened(broker_url: str, tag: str) -> AsyncIterator[Callable[..., RabbitMQTransport]]:
    """Opens transports on the test's exchange; at the end closes them and deletes the
    groups named ``*-<tag>`` they declared (sharded or not) and the exchange."""
    exchange = f"tidings.test.{tag}"
    transports: list[RabbitMQTransport] = []
    groups: set[str] = set()

    def open_transport(**options: object) -> RabbitMQTransport:
        transport = RabbitMQTransport(url_of(broker_url, exchange, **options))
        original = transport.declare_subscription

        async def declare(group: str, event_types: Collection[str]) -> None:
            groups.add(group)
            await original(group, event_types)

        transport.declare_subscription = declare  # type: ignore[method-assign]
        transports.append(transport)
        return transport

    yield open_transport
    for transport in transports:
        await transport.close()
    cleaner = RabbitMQTransport(url_of(broker_url, exchange))
    async with cleaner:
        for group in groups:
            await cleaner.delete_subscription(group)
    connection = await aio_pika.connect(broker_url)
    async with connection:
        channel = await connection.channel()
        await channel.exchange_delete(exchange)


class Reader:
    """One "consumer process": reads the shards its ShardSet grants in the background
    and records every delivery; acknowledges them at once unless ``ack`` is False."""

    def __init__(
        self,
        transport: RabbitMQTransport,
        group: str,
        types: set[str],
        shards: ShardSet,
        *,
        ack: bool = True,
    ) -> None:
        self.transport, self.shards, self.ack = transport, shards, ack
        self.got: list[tuple[int, CloudEvent, Delivery]] = []
        self._arrived = asyncio.Event()
        self._task = asyncio.create_task(self._run(group, types))

    async def _run(self, group: str, types: set[str]) -> None:
        try:
            async for batch in self.transport.subscribe_shards(group, types, 50, self.shards):
                for delivery in batch:
                    assert delivery.shard is not None
                    self.got.append((delivery.shard, conformance.decode(delivery), delivery))
                if self.ack:
                    await ack_all(self.transport, batch)
                self._arrived.set()
        finally:
            self._arrived.set()

    def ids(self) -> set[str]:
        return {event.id for _, event, _ in self.got}

    async def until(self, condition: Callable[[], bool], *others: Reader) -> None:
        """Until ``condition`` holds, re-checked whenever this reader or ``others`` got
        something; raises if a subscription ended."""
        readers = (self, *others)
        async with asyncio.timeout(TIMEOUT):
            while not condition():
                for reader in readers:
                    if reader._task.done():
                        reader._task.result()  # raises what ended the subscription
                        raise AssertionError("a subscription ended")
                    reader._arrived.clear()
                waits = [asyncio.ensure_future(reader._arrived.wait()) for reader in readers]
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for wait in waits:
                        wait.cancel()

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def assert_in_order_per_key(events: list[CloudEvent]) -> None:
    seqs: dict[str | None, list[int]] = defaultdict(list)
    seen: set[str] = set()
    for event in events:
        if event.id not in seen:
            seen.add(event.id)
            seqs[event.subject].append(json.loads(event.data_json)["seq"])
    for key, order in seqs.items():
        assert order == sorted(order), f"key {key}: {order}"


def numbered(events: list[CloudEvent], first: int) -> list[CloudEvent]:
    """``events`` with ``seq`` continuing from ``first`` (a second phase of one stream)."""
    out = []
    for offset, event in enumerate(events):
        data = json.loads(event.data_json)
        data["seq"] = first + offset
        out.append(replace(event, data_json=json.dumps(data).encode()))
    return out


async def test_two_processes_with_disjoint_shards_share_a_group_in_order_per_key(
    opened: Callable[..., RabbitMQTransport], tag: str
) -> None:
    first, second = opened(shards=4), opened(shards=4)
    await first.connect()
    await second.connect()
    group, event_type = f"split-{tag}", f"shards.split.{tag}"
    await first.declare_subscription(group, {event_type})
    assert first.shard_count(group) == 4
    events = conformance.make_events(400, 40, event_type, "catalog")
    a, b = ShardSet(4), ShardSet(4)
    a.grant({0, 1})
    b.grant({2, 3})
    readers = [Reader(first, group, {event_type}, a), Reader(second, group, {event_type}, b)]
    for start in range(0, len(events), 100):
        assert await first.publish_batch("catalog", events[start : start + 100]) == frozenset()
    try:
        await readers[0].until(lambda: len(readers[0].ids() | readers[1].ids()) == 400, readers[1])
    finally:
        for reader in readers:
            await reader.stop()

    assert not readers[0].ids() & readers[1].ids(), "an event reached both processes"
    assert len(readers[0].got) + len(readers[1].got) == 400, "an event came twice"
    shard_of_key: dict[str | None, set[int]] = defaultdict(set)
    for reader, granted in zip(readers, ({0, 1}, {2, 3}), strict=True):
        assert {shard for shard, _, _ in reader.got} <= granted
        for shard, event, _ in reader.got:
            shard_of_key[event.subject].add(shard)
        assert_in_order_per_key([event for _, event, _ in reader.got])
    assert all(len(shards) == 1 for shards in shard_of_key.values()), "a key in two shards"
    spread: dict[int, int] = defaultdict(int)
    for (shard,) in shard_of_key.values():
        spread[shard] += 1
    assert sorted(spread) == [0, 1, 2, 3], f"40 keys over 4 shards: {dict(spread)}"


async def test_a_revoked_shard_continues_in_order_at_its_next_owner(
    opened: Callable[..., RabbitMQTransport], tag: str
) -> None:
    first, second = opened(shards=2), opened(shards=2)
    group, event_type = f"handover-{tag}", f"shards.handover.{tag}"
    await first.declare_subscription(group, {event_type})
    before = conformance.make_events(40, 20, event_type, "catalog")
    after = numbered(conformance.make_events(40, 20, event_type, "catalog"), 40)
    # the same 20 keys in both phases
    after = [replace(event, subject=old.subject) for event, old in zip(after, before, strict=True)]
    a, b = ShardSet(2), ShardSet(2)
    a.grant({0, 1})
    holder = Reader(first, group, {event_type}, a, ack=False)
    taker = Reader(second, group, {event_type}, b)
    try:
        await first.publish_batch("catalog", before)
        await holder.until(lambda: len(holder.ids()) == 40)
        a.revoke({1})
        # The transport stops reading the shard; what it yielded is outstanding until
        # acknowledged, and only then may the shard go to its next owner.
        await ack_all(first, [delivery for _, _, delivery in holder.got])
        await asyncio.wait_for(a.wait_drained(), TIMEOUT)
        assert a.drained() == {1}
        held = len(holder.got)
        b.grant({1})
        await first.publish_batch("catalog", after)
        await holder.until(lambda: len(holder.ids() | taker.ids()) == 80, taker)
    finally:
        await holder.stop()
        await taker.stop()

    assert all(shard == 0 for shard, _, _ in holder.got[held:]), "shard 1 read after stopped"
    assert {shard for shard, _, _ in taker.got} == {1}
    assert not holder.ids() & taker.ids(), "acknowledged events were delivered again"
    # per key: what the holder handled, then what the taker handled, in order
    assert_in_order_per_key([e for _, e, _ in holder.got] + [e for _, e, _ in taker.got])


async def test_a_shard_revoked_before_the_subscription_read_it_drains_at_once(
    opened: Callable[..., RabbitMQTransport], tag: str
) -> None:
    transport = opened(shards=4)
    await transport.connect()
    group, event_type = f"early-{tag}", f"shards.early.{tag}"
    await transport.declare_subscription(group, {event_type})
    shards = ShardSet(4)
    shards.grant({0, 1, 2, 3})
    shards.revoke({2, 3})  # a heartbeat between the first lease and the subscription
    reader = Reader(transport, group, {event_type}, shards)
    try:
        await asyncio.wait_for(shards.wait_drained(), TIMEOUT)
        assert shards.drained() == {2, 3}
    finally:
        await reader.stop()


CRASHING_CONSUMER = """
import asyncio, json, sys
from tidings.transports.rabbitmq import RabbitMQTransport
from tidings.transports.rabbitmq_options import BUCKETS
from tidings.transports.sharding import ShardSet

async def main(url, group, event_type):
    transport = RabbitMQTransport(url)
    await transport.connect()
    shards = ShardSet(2)
    shards.grant({0, 1})
    acked, held = set(), 0
    async for batch in transport.subscribe_shards(group, {event_type}, 50, shards):
        for delivery in batch:
            # The first event of each shard is acknowledged, the rest held: with
            # prefetch 3 the broker sends a 4th only once it processed that ack.
            if delivery.shard not in acked:
                await delivery.ack()
                acked.add(delivery.shard)
                what = "acked"
            else:
                held += 1
                what = "held"
            event_id = delivery.headers["cloudEvents:id"]
            print(json.dumps([delivery.shard, event_id, what]), flush=True)
        if held == 6:
            print("holding", flush=True)
            await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
"""


async def test_after_a_sigkill_the_next_owner_gets_the_unacknowledged_events_first_in_order(
    opened: Callable[..., RabbitMQTransport], broker_url: str, tag: str
) -> None:
    # prefetch 3 per shard consumer: the killed process acknowledged the first event of
    # each shard and holds the next 3, while the rest of each shard waits behind them.
    publisher = opened(shards=2)
    group, event_type = f"killed-{tag}", f"shards.killed.{tag}"
    await publisher.declare_subscription(group, {event_type})
    # 40 events over 20 keys: each shard has at least 2 keys (4 events) but for a
    # 1-in-25,000 chance
    before = conformance.make_events(40, 20, event_type, "catalog")
    await publisher.publish_batch("catalog", before)
    url = url_of(broker_url, f"tidings.test.{tag}", shards=2, prefetch=3)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CRASHING_CONSUMER,
        url,
        group,
        event_type,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    held: dict[int, list[str]] = defaultdict(list)
    acked: set[str] = set()
    try:
        assert child.stdout is not None
        async with asyncio.timeout(TIMEOUT):
            while (line := (await child.stdout.readline()).decode().strip()) != "holding":
                assert line, "the consumer process ended early"
                shard, event_id, what = json.loads(line)
                if what == "acked":
                    acked.add(event_id)
                else:
                    held[shard].append(event_id)
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    assert {shard: len(ids) for shard, ids in held.items()} == {0: 3, 1: 3}

    after = numbered(conformance.make_events(40, 20, event_type, "catalog"), 40)
    await publisher.publish_batch("catalog", after)
    successor = opened(shards=2)
    shards = ShardSet(2)
    shards.grant({0, 1})
    reader = Reader(successor, group, {event_type}, shards)
    try:
        await reader.until(lambda: len(reader.ids()) == 78)
    finally:
        await reader.stop()

    for shard in (0, 1):
        mine = [(event.id, delivery.redelivered) for s, event, delivery in reader.got if s == shard]
        assert mine[:3] == [(event_id, True) for event_id in held[shard]], (
            f"shard {shard}: the killed process's unacknowledged events must come first, "
            "in the order it received them"
        )
    assert_in_order_per_key([event for _, event, _ in reader.got])
    assert len(acked) == 2
    assert {event.id for _, event, _ in reader.got} == {e.id for e in before + after} - acked


async def test_two_consumers_of_one_shard_never_both_receive(
    opened: Callable[..., RabbitMQTransport], tag: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The broker counts only the active consumer of a single-active-consumer queue, so
    # the test learns that both are registered from the consume-oks themselves.
    consumers: dict[str, int] = defaultdict(int)
    registered = asyncio.Event()
    basic_consume = aiormq.Channel.basic_consume

    async def counting(self: aiormq.Channel, queue: str, *args: Any, **kwargs: Any) -> Any:
        result = await basic_consume(self, queue, *args, **kwargs)
        consumers[queue] += 1
        registered.set()
        return result

    monkeypatch.setattr(aiormq.Channel, "basic_consume", counting)

    async def registered_on_both(count: int) -> None:
        async with asyncio.timeout(TIMEOUT):
            while [consumers[f"tidings.{group}.{shard}"] for shard in (0, 1)] != [count] * 2:
                registered.clear()
                await registered.wait()

    first, second = opened(shards=2), opened(shards=2)
    group, event_type = f"sac-{tag}", f"shards.sac.{tag}"
    await first.declare_subscription(group, {event_type})
    a, b = ShardSet(2), ShardSet(2)
    a.grant({0, 1})
    b.grant({0, 1})  # a lease bug: both think they own both shards
    active = Reader(first, group, {event_type}, a)
    # the first consumer is registered on both queues before the second one starts
    await registered_on_both(1)
    standby = Reader(second, group, {event_type}, b)
    await registered_on_both(2)
    events = conformance.make_events(40, 20, event_type, "catalog")
    try:
        await first.publish_batch("catalog", events)
        await active.until(lambda: len(active.ids() | standby.ids()) == 40, standby)
    finally:
        await active.stop()
        await standby.stop()
    assert standby.got == []


async def test_mismatching_shard_counts_are_refused(
    opened: Callable[..., RabbitMQTransport], broker_url: str, tag: str
) -> None:
    two, three, unsharded = opened(shards=2), opened(shards=3), opened()
    sharded_group, plain_group = f"two-{tag}", f"plain-{tag}"
    await two.declare_subscription(sharded_group, {"shards.refused"})
    await two.declare_subscription(sharded_group, {"shards.refused"})  # idempotent

    with pytest.raises(ConfigurationError, match=r"has 2 shards.*\?shards=2"):
        await three.declare_subscription(sharded_group, {"shards.refused"})
    with pytest.raises(ConfigurationError, match=r"has 2 shards.*asks for 1"):
        await unsharded.declare_subscription(sharded_group, {"shards.refused"})
    await unsharded.declare_subscription(plain_group, {"shards.refused"})
    with pytest.raises(ConfigurationError, match="unsharded subscription"):
        await two.declare_subscription(plain_group, {"shards.refused"})
    with pytest.raises(ConfigurationError, match="between 1 and"):
        RabbitMQTransport(f"{broker_url}?shards=0")
    wrong_set = two.subscribe_shards(sharded_group, {"shards.refused"}, 10, ShardSet(3))
    with pytest.raises(ConfigurationError, match=r"shard set .* has 3 shards"):
        await anext(aiter(wrong_set))

    # the refused declarations created nothing
    connection = await aio_pika.connect(broker_url)
    async with connection:
        for name in (
            f"tidings.{sharded_group}.2",
            f"tidings.{sharded_group}",
            f"tidings.{plain_group}.0",
        ):
            channel = await connection.channel()
            with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
                await channel.declare_queue(name, passive=True)


async def test_a_sharded_subscription_deleted_by_any_url_goes_whole_and_takes_another_count(
    opened: Callable[..., RabbitMQTransport], broker_url: str, tag: str
) -> None:
    group, event_type = f"recount-{tag}", f"shards.recount.{tag}"
    two = opened(shards=2)
    await two.declare_subscription(group, {event_type})
    await two.publish_batch("catalog", conformance.make_events(10, 5, event_type, "catalog"))
    await opened().delete_subscription(group)  # a URL without ?shards=
    connection = await aio_pika.connect(broker_url)
    async with connection:
        for declare in (
            lambda channel: channel.declare_queue(f"tidings.{group}.0", passive=True),
            lambda channel: channel.declare_queue(f"tidings.{group}.1", passive=True),
            lambda channel: channel.declare_exchange(f"tidings.{group}.shards", passive=True),
            lambda channel: channel.declare_exchange(f"tidings.{group}.shards:2", passive=True),
        ):
            channel = await connection.channel()
            with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
                await declare(channel)

    three = opened(shards=3)
    await three.declare_subscription(group, {event_type})
    events = conformance.make_events(30, 9, event_type, "catalog")
    assert await three.publish_batch("catalog", events) == frozenset()
    received = await conformance.collect(three, group, {event_type}, len(events), timeout=30)
    conformance.assert_complete_and_ordered(events, received)
    assert {e.id for e in received} == {e.id for e in events}  # none of the deleted subscription's


async def test_one_consumer_without_a_shard_set_reads_every_shard_in_order(
    opened: Callable[..., RabbitMQTransport],
) -> None:
    transport = opened(shards=3)
    await transport.connect()
    await conformance.check_fan_out_and_order(transport, count=600, keys=30, batch=200)
    await conformance.check_unroutable_events_are_reported(transport)
    await conformance.check_deleted_subscription_forgets_its_events(transport)


async def test_events_without_a_partition_key_all_reach_one_shard(
    opened: Callable[..., RabbitMQTransport], tag: str
) -> None:
    transport = opened(shards=3)
    group, event_type = f"nokey-{tag}", f"shards.nokey.{tag}"
    await transport.declare_subscription(group, {event_type})
    events = [
        replace(event, subject=None)
        for event in conformance.make_events(10, 1, event_type, "catalog")
    ]
    assert await transport.publish_batch("catalog", events) == frozenset()
    shards = ShardSet(3)
    shards.grant({0, 1, 2})
    reader = Reader(transport, group, {event_type}, shards)
    try:
        await reader.until(lambda: len(reader.ids()) == 10)
    finally:
        await reader.stop()
    assert [event.id for _, event, _ in reader.got] == [event.id for event in events]
    assert len({shard for shard, _, _ in reader.got}) == 1


async def test_a_keys_shard_is_its_bucket_modulo_the_count_and_foreign_messages_reach_shard_0(
    opened: Callable[..., RabbitMQTransport], broker_url: str, tag: str
) -> None:
    # The bucket bindings, not their order, decide: so a broker restart (which recovers
    # bindings in another order) moves no key to another shard.
    transport = opened(shards=4)
    group, event_type = f"buckets-{tag}", f"shards.buckets.{tag}"
    await transport.declare_subscription(group, {event_type})
    await opened(shards=4).declare_subscription(group, {event_type})  # declared again
    events = conformance.make_events(120, 40, event_type, "catalog")
    assert await transport.publish_batch("catalog", events) == frozenset()
    foreign = {"specversion": "1.0", "id": f"foreign-{tag}", "source": "elsewhere"}
    connection = await aio_pika.connect(broker_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(f"tidings.test.{tag}")
        body = json.dumps({**foreign, "type": event_type, "subject": "k-1", "data": {}})
        await exchange.publish(
            aio_pika.Message(body.encode(), content_type="application/cloudevents+json"),
            routing_key=event_type,
        )
    shards = ShardSet(4)
    shards.grant({0, 1, 2, 3})
    reader = Reader(transport, group, {event_type}, shards)
    try:
        await reader.until(lambda: len(reader.ids()) == 121)
    finally:
        await reader.stop()
    for shard, event, _ in reader.got:
        if event.id == foreign["id"]:
            assert shard == 0  # no bucket key: the shard exchange's alternate exchange
        else:
            assert event.subject is not None
            assert shard == partition_slot(event.subject) % BUCKETS % 4, event.subject
    assert len({shard for shard, _, _ in reader.got}) == 4
