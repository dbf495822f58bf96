"""The Google Cloud Pub/Sub transport against Google's emulator (.ci/services/pubsub.sh):
the shared conformance checks, then what is Pub/Sub's own (ordering keys, paused keys,
filters the emulator does not apply, the CloudEvents Pub/Sub binding).

Every test gets a topic of its own, deleted with its subscriptions when the test ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from cloudevents.core.bindings import http as sdk_http
from cloudevents.core.formats.json import JSONFormat
from google.cloud import pubsub_v1
from google.pubsub_v1.services.publisher.transports.grpc import PublisherGrpcTransport

from tests.integration.transports import conformance
from tests.services import require
from tests.support.pubsub_admin import remove_topic
from tidings.contracts.cloudevents import CloudEvent
from tidings.domain.ids import uuid7
from tidings.errors import ConfigurationError
from tidings.transports import PublishNotConfirmedError, TransportError, open_transport
from tidings.transports.base import Delivery
from tidings.transports.pubsub import PubSubTransport


@pytest.fixture
def url() -> str:
    return f"{require('pubsub')}&topic=tidings-test-{uuid7().hex[:12]}"


@pytest.fixture
async def transport(url: str) -> AsyncIterator[PubSubTransport]:
    opened = open_transport(url)
    assert isinstance(opened, PubSubTransport)
    async with opened:
        yield opened
    await remove_topic(url)


async def first_delivery(transport: PubSubTransport, group: str, event_type: str) -> Delivery:
    async with contextlib.aclosing(transport.subscribe(group, {event_type})) as deliveries:
        async for delivery in deliveries:
            await delivery.ack()
            return delivery
    raise AssertionError("the subscription ended")


async def test_every_group_receives_every_event_in_order_per_key(
    transport: PubSubTransport,
) -> None:
    await conformance.check_fan_out_and_order(transport)


async def test_a_group_receives_only_the_types_it_subscribed_to(
    transport: PubSubTransport,
) -> None:
    # The emulator stores the subscription's filter but does not apply it: the
    # transport applies it itself.
    await conformance.check_type_filtering(transport)


async def test_signed_events_verify_as_delivered(transport: PubSubTransport) -> None:
    await conformance.check_signatures_survive(transport)


async def test_an_event_no_subscription_admits_is_reported_unroutable(
    transport: PubSubTransport,
) -> None:
    assert transport.routes_by_type
    await conformance.check_unroutable_events_are_reported(transport)


async def test_a_type_unroutable_once_is_taken_after_another_process_declares_it(
    transport: PubSubTransport, url: str
) -> None:
    # The transport remembers taken types, not untaken ones: it lists the topic's
    # subscriptions again for a type it saw nobody take.
    tag = uuid7().hex[:12]
    event_type, group = f"catalog.later.{tag}", f"later-{tag}"
    first, second = conformance.make_events(2, 1, event_type, "catalog")
    assert await transport.publish_batch("catalog", [first]) == frozenset({0})
    declarer = PubSubTransport(url)
    try:
        await declarer.declare_subscription(group, {event_type})
    finally:
        await declarer.close()

    assert await transport.publish_batch("catalog", [second]) == frozenset()

    delivery = await first_delivery(transport, group, event_type)
    assert conformance.decode(delivery).id == second.id
    assert delivery.routed_type == event_type


async def test_an_unfiltered_subscription_takes_every_type(transport: PubSubTransport) -> None:
    # A group with more types than one 256-byte filter holds gets no filter at all.
    tag = uuid7().hex[:12]
    many = {f"catalog.some.rather.long.type.name.{i}.{tag}" for i in range(8)}
    await transport.declare_subscription(f"wide-{tag}", many)
    [event] = conformance.make_events(1, 1, f"anything.{tag}", "catalog")

    assert await transport.publish_batch("catalog", [event]) == frozenset()


async def test_a_delivery_given_back_is_delivered_again(transport: PubSubTransport) -> None:
    await conformance.check_unacked_is_redelivered(transport)


async def test_a_subscriber_that_stops_leaves_every_ordering_key_to_the_next_one(
    transport: PubSubTransport,
) -> None:
    # A stream the client merely cancelled stays registered on the emulator, which keeps
    # giving it the keys that hash to it: the next subscriber would never see those.
    tag = uuid7().hex[:12]
    event_type, group = f"catalog.restart.{tag}", f"restart-{tag}"
    await transport.declare_subscription(group, {event_type})
    events = conformance.make_events(200, 20, event_type, "catalog")
    await transport.publish_batch("catalog", events)
    batches = transport.subscribe_batches(group, {event_type}, 100)
    async with contextlib.aclosing(batches):
        first = await anext(batches)
        # Half settled, half left in flight when the subscriber stops.
        settled = first[: len(first) // 2]
        await transport.ack_many(settled)
    acked = {conformance.decode(delivery).id for delivery in settled}
    rest = [event for event in events if event.id not in acked]

    received = await conformance.collect(transport, group, {event_type}, len(rest), timeout=60)

    # Every key, not per-key order: the emulator redelivers a key's messages in the
    # order they were nacked or expired, not in publication order (docs/operations.md).
    assert {event.id for event in received} == {event.id for event in rest}


async def test_a_deleted_subscription_forgets_what_it_kept(transport: PubSubTransport) -> None:
    await conformance.check_deleted_subscription_forgets_its_events(transport)


async def test_a_group_of_several_types_gets_exactly_those_in_order(
    transport: PubSubTransport,
) -> None:
    tag = uuid7().hex[:12]
    created, updated, other = (f"catalog.{name}.{tag}" for name in ("created", "updated", "x"))
    group = f"multi-{tag}"
    await transport.declare_subscription(group, {created, updated})
    events = [
        event
        for trio in zip(
            conformance.make_events(20, 1, created, "catalog"),
            conformance.make_events(20, 1, other, "catalog"),
            conformance.make_events(20, 1, updated, "catalog"),
            strict=True,
        )
        for event in trio
    ]

    await transport.publish_batch("catalog", events)

    received = await conformance.collect(transport, group, {created, updated}, 40, timeout=30)
    wanted = [event for event in events if event.type != other]
    assert [event.id for event in received] == [event.id for event in wanted]


async def test_messages_follow_the_cloudevents_pubsub_binding_with_the_key_as_ordering_key(
    transport: PubSubTransport,
) -> None:
    group = f"binding-{uuid7().hex[:12]}"
    event = CloudEvent(
        id=str(uuid7()),
        source="catalog",
        type="catalog.product.updated",
        subject="product-7",
        time="2026-01-02T03:04:05.678901Z",
        correlationid="c-1",
        data_json=json.dumps({"sku": "A-1"}).encode(),
    )
    await transport.declare_subscription(group, {event.type})

    await transport.publish_batch("catalog", [event])

    async with contextlib.aclosing(transport.subscribe(group, {event.type})) as deliveries:
        delivery = await anext(deliveries)
        message = delivery._transport_token.message
        await delivery.ack()
    assert message.ordering_key == "product-7"
    assert delivery.headers["ce-specversion"] == "1.0"
    assert delivery.headers["ce-id"] == event.id
    assert delivery.headers["ce-subject"] == "product-7"
    assert delivery.headers["content-type"] == "application/json"
    assert conformance.decode(delivery) == event
    # The SDK has no Pub/Sub binding; for ASCII values without space, '"' or '%' its
    # HTTP binding reads the same ce- attributes and content-type.
    read = sdk_http.from_binary(
        sdk_http.HTTPMessage(headers=delivery.headers, body=delivery.body), JSONFormat()
    )
    assert read.get_id() == event.id
    assert read.get_type() == event.type
    assert read.get_subject() == "product-7"
    assert read.get_extension("correlationid") == "c-1"
    assert read.get_data() == {"sku": "A-1"}


async def test_a_failed_batch_resumes_its_paused_keys_and_the_retry_keeps_order(
    transport: PubSubTransport, url: str
) -> None:
    tag = uuid7().hex[:12]
    event_type, group = f"catalog.paused.{tag}", f"paused-{tag}"
    events = conformance.make_events(40, 4, event_type, "catalog")
    # Taken by a first group, so sent: the keys' sequencers exist in the client.
    await transport.declare_subscription(f"first-{tag}", {event_type})
    assert await transport.publish_batch("catalog", events[:10]) == frozenset()
    # The topic disappears (as when the emulator restarts): every key of the next
    # batch fails, and the client pauses those ordering keys.
    emulator = transport._emulator
    admin = pubsub_v1.PublisherClient(
        transport=PublisherGrpcTransport(channel=grpc.insecure_channel(emulator))
    )
    admin.delete_topic(topic=transport.topic_path, timeout=10)

    with pytest.raises(PublishNotConfirmedError, match="resumed: retry the whole batch"):
        await transport.publish_batch("catalog", events[10:20])

    # The relay retries; the transport recreates the topic, the keys publish again.
    await transport.declare_subscription(group, {event_type})
    await transport.publish_batch("catalog", events[10:20])
    await transport.publish_batch("catalog", events[20:])
    received = await conformance.collect(transport, group, {event_type}, 30, timeout=30)
    conformance.assert_complete_and_ordered(events[10:], received)


async def test_a_subscription_whose_filter_excludes_a_new_type_is_refused(
    transport: PubSubTransport,
) -> None:
    tag = uuid7().hex[:12]
    group = f"grown-{tag}"
    await transport.declare_subscription(group, {f"a.{tag}"})

    with pytest.raises(ConfigurationError, match="cannot change a filter"):
        await transport.declare_subscription(group, {f"a.{tag}", f"b.{tag}"})
    await transport.declare_subscription(group, {f"a.{tag}"})  # idempotent


async def test_a_type_the_filter_admits_but_the_group_dropped_is_still_handed_over(
    transport: PubSubTransport,
) -> None:
    # Like a stale RabbitMQ binding: the consumer, not the transport, decides about it.
    tag = uuid7().hex[:12]
    kept, dropped, group = f"kept.{tag}", f"dropped.{tag}", f"shrunk-{tag}"
    await transport.declare_subscription(group, {kept, dropped})
    [event] = conformance.make_events(1, 1, dropped, "catalog")
    await transport.publish_batch("catalog", [event])

    received = await conformance.collect(transport, group, {kept}, 1, timeout=30)

    assert [e.id for e in received] == [event.id]


async def test_publishing_while_the_emulator_is_unreachable_raises_transport_error_promptly() -> (
    None
):
    transport = open_transport("pubsub://p?emulator=127.0.0.1:1&connect_timeout=2")
    [event] = conformance.make_events(1, 1, "catalog.product.updated", "catalog")

    started = time.monotonic()
    with pytest.raises(TransportError, match=re.escape("emulator 127.0.0.1:1")):
        await transport.publish_batch("catalog", [event])
    with pytest.raises(TransportError):
        await transport.connect()

    assert time.monotonic() - started < 10
    await transport.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("pubsub://", "must name the Google Cloud project"),
        ("pubsub://p?colour=red", "unknown Pub/Sub URL option"),
        ("pubsub://p?prefetch=many", "invalid Pub/Sub URL option"),
        ("pubsub://p?ack_deadline=5", "between 10 and 600"),
        ("pubsub://p?topic=goog-x", "not a valid Pub/Sub topic id"),
    ],
)
def test_invalid_urls_are_refused_saying_why(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        open_transport(url)


async def test_two_subscribers_of_one_group_share_its_events_keeping_per_key_order(
    transport: PubSubTransport, url: str
) -> None:
    tag = uuid7().hex[:12]
    event_type, group = f"catalog.shared.{tag}", f"shared-{tag}"
    await transport.declare_subscription(group, {event_type})
    events = conformance.make_events(1000, 20, event_type, "catalog")
    for first in range(0, len(events), 500):
        await transport.publish_batch("catalog", events[first : first + 500])
    arrivals: list[CloudEvent] = []
    seen: set[str] = set()
    done = asyncio.Event()

    async def subscriber(consumer: PubSubTransport, name: str) -> None:
        batches = consumer.subscribe_batches(group, {event_type}, 100)
        async with contextlib.aclosing(batches):
            async for batch in batches:
                for delivery in batch:
                    event = conformance.decode(delivery)
                    arrivals.append(event)
                    seen.add(event.id)
                    by[name] += 1
                await consumer.ack_many(batch)
                if len(seen) == len(events):
                    done.set()

    by = {"a": 0, "b": 0}
    second = PubSubTransport(url)
    tasks = [
        asyncio.create_task(subscriber(transport, "a")),
        asyncio.create_task(subscriber(second, "b")),
    ]
    try:
        await asyncio.wait_for(done.wait(), timeout=120)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await second.close()

    conformance.assert_complete_and_ordered(events, arrivals)
    print(f"deliveries per subscriber: {by}")
