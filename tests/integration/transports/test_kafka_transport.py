"""The Kafka transport against a real Kafka-protocol broker (Tansu in CI, see
.ci/services/tansu.sh): the shared conformance checks, plus what is Kafka's own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner

from tests.integration.transports import conformance
from tests.services import require
from tidings.domain.ids import uuid7
from tidings.transports import TransportError, open_transport
from tidings.transports.kafka import KafkaTransport


@pytest.fixture
async def transport() -> AsyncIterator[KafkaTransport]:
    # A topic of the test's own, so runs never see each other's events; a short
    # session lets a group's next consumer take over quickly after the previous one.
    topic = f"tidings.test.{uuid7().hex}"
    opened = open_transport(
        f"{require('kafka')}?topic={topic}&partitions=4"
        "&session_timeout_ms=6000&heartbeat_interval_ms=1000"
    )
    assert isinstance(opened, KafkaTransport)
    async with opened:
        yield opened
    # Tansu keeps topics in memory until it stops: remove this one, best effort.
    admin = AIOKafkaAdminClient(bootstrap_servers=opened.options.bootstrap_servers)
    with contextlib.suppress(Exception):
        await admin.start()
        await admin.delete_topics([topic])
    await admin.close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_every_group_receives_every_event_in_order_per_key(
    transport: KafkaTransport,
) -> None:
    await conformance.check_fan_out_and_order(transport)


async def test_a_group_receives_only_the_types_it_subscribed_to(
    transport: KafkaTransport,
) -> None:
    await conformance.check_type_filtering(transport)


async def test_signed_events_verify_as_delivered(transport: KafkaTransport) -> None:
    await conformance.check_signatures_survive(transport)


async def test_a_delivery_given_back_comes_to_the_next_consumer(
    transport: KafkaTransport,
) -> None:
    await conformance.check_unacked_is_redelivered(transport)


async def test_a_nacked_delivery_comes_again_within_the_same_subscription(
    transport: KafkaTransport,
) -> None:
    group, event_type = f"nacking-{uuid7().hex}", "test.nack"
    await transport.declare_subscription(group, {event_type})
    events = conformance.make_events(3, 1, event_type, "src")
    await transport.publish_batch("src", events)
    seen: list[tuple[str, bool]] = []

    async def nack_the_second_once() -> None:
        async for delivery in transport.subscribe(group, {event_type}):
            event = conformance.decode(delivery)
            seen.append((event.id, delivery.redelivered))
            if event.id == events[1].id and not delivery.redelivered:
                await delivery.nack(requeue=True)
                continue
            await delivery.ack()
            if event.id == events[2].id:
                return

    await asyncio.wait_for(nack_the_second_once(), timeout=60)
    ids = [e.id for e in events]
    # The third event was fetched but not handed out before the nack: a first delivery.
    assert seen == [(ids[0], False), (ids[1], False), (ids[1], True), (ids[2], False)]


async def test_offsets_are_committed_only_up_to_the_first_unacknowledged_event(
    transport: KafkaTransport,
) -> None:
    group, event_type = f"gaps-{uuid7().hex}", "test.gap"
    await transport.declare_subscription(group, {event_type})
    events = conformance.make_events(3, 1, event_type, "src")  # one key: one partition
    await transport.publish_batch("src", events)

    async def ack_all_but_the_first() -> None:
        deliveries = []
        async for delivery in transport.subscribe(group, {event_type}):
            deliveries.append(delivery)
            if len(deliveries) == 3:
                for later in deliveries[1:]:
                    await later.ack()
                return

    await asyncio.wait_for(ack_all_but_the_first(), timeout=60)
    again = await conformance.collect(transport, group, {event_type}, 3, timeout=60)
    assert [e.id for e in again] == [e.id for e in events]


async def test_messages_follow_the_cloudevents_kafka_binary_binding(
    transport: KafkaTransport,
) -> None:
    [event] = conformance.make_events(1, 1, "test.binding", "catalog")
    await transport.publish_batch("catalog", [event])
    consumer = AIOKafkaConsumer(
        transport.options.topic,
        bootstrap_servers=transport.options.bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=30)
    finally:
        await consumer.stop()
    headers = dict(record.headers)
    assert record.key == b"key-0"
    assert headers["ce_id"] == event.id.encode()
    assert headers["ce_type"] == b"test.binding"
    assert headers["ce_specversion"] == b"1.0"
    assert headers["content-type"] == b"application/json"
    assert record.value == event.data_json


async def read_topic(transport: KafkaTransport, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    """The first ``count`` records of the transport's topic, in each partition's order."""
    consumer = AIOKafkaConsumer(
        transport.options.topic,
        bootstrap_servers=transport.options.bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(60):
            while len(records) < count:
                for batch in (await consumer.getmany(timeout_ms=1000)).values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def test_each_key_lands_on_the_partition_kafkas_default_partitioner_picks(
    transport: KafkaTransport,
) -> None:
    # Other producers of the topic (Java, aiokafka's send) must agree on where a key
    # lives, or its events would lose their order across producers.
    events = conformance.make_events(200, 40, "test.partitioning", "src")
    await transport.publish_batch("src", events)
    records = await read_topic(transport, len(events))
    partitions = sorted(await transport.producer.partitions_for(transport.options.topic))
    assert len(partitions) == 4
    for record in records:
        assert record.key is not None
        assert record.partition == DefaultPartitioner()(record.key, partitions, partitions)


async def test_a_batch_larger_than_one_record_batch_keeps_its_order(
    transport: KafkaTransport,
) -> None:
    # 600 events of ~2 kB on one key: several of the producer's 256 kB record batches.
    events = [
        replace(event, data_json=json.dumps({"seq": i, "padding": "x" * 2000}).encode())
        for i, event in enumerate(conformance.make_events(600, 1, "test.large", "src"))
    ]
    await transport.publish_batch("src", events)
    records = await read_topic(transport, len(events))
    assert [dict(record.headers)["ce_id"].decode() for record in records] == [
        event.id for event in events
    ]


async def test_an_unreachable_broker_is_a_transport_error_within_seconds() -> None:
    started = time.monotonic()
    with pytest.raises(TransportError, match="cannot reach Kafka"):
        async with asyncio.timeout(30):
            async with open_transport(f"kafka://127.0.0.1:{closed_port()}") as transport:
                events = conformance.make_events(1, 1, "test.unreachable", "src")
                await transport.publish_batch("src", events)
    assert time.monotonic() - started < 30


async def test_a_group_declared_late_gets_what_the_log_keeps(transport: KafkaTransport) -> None:
    await conformance.check_late_group_gets_what_the_log_keeps(transport)
