"""The NATS JetStream transport against a real server: the shared conformance checks,
then what is specific to JetStream (dedupe by event id, several types per group,
unreachable server, subject rules).

Every test gets a stream and subject prefix of its own, so that tests never see each
other's messages; the stream (with its consumers) is deleted when the test ends.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from tests.integration.transports import conformance
from tests.services import require
from tests.support.nats_streams import transport_on_own_stream
from tidings.domain.ids import uuid7
from tidings.errors import ConfigurationError
from tidings.transports.base import PublishNotConfirmedError, TransportError
from tidings.transports.nats import NatsTransport
from tidings.transports.nats_options import event_subject
from tidings.transports.nats_publish import encode


@pytest.fixture
def server_url() -> str:
    return require("nats")


@pytest.fixture
def stream() -> str:
    return f"TIDINGS_TEST_{uuid7().hex[:12]}"


@pytest.fixture
def url(server_url: str, stream: str) -> str:
    return f"{server_url}?stream={stream}&subject_prefix={stream.lower()}"


@pytest.fixture
async def transport(url: str, server_url: str, stream: str) -> AsyncIterator[NatsTransport]:
    async with transport_on_own_stream(url, server_url, stream) as transport:
        yield transport


async def stored_messages(server_url: str, stream: str) -> int:
    client = await nats.connect(server_url)
    try:
        info = await client.jetstream().stream_info(stream)
        return int(info.state.messages)
    finally:
        await client.close()


async def test_every_group_receives_every_event_in_order_per_key(
    transport: NatsTransport,
) -> None:
    await conformance.check_fan_out_and_order(transport)


async def test_a_group_receives_only_the_types_it_subscribed_to(
    transport: NatsTransport,
) -> None:
    await conformance.check_type_filtering(transport)


async def test_signed_events_verify_as_delivered(transport: NatsTransport) -> None:
    await conformance.check_signatures_survive(transport)


async def test_a_delivery_given_back_is_delivered_again(transport: NatsTransport) -> None:
    await conformance.check_unacked_is_redelivered(transport)


async def test_a_deleted_subscription_forgets_what_it_kept(transport: NatsTransport) -> None:
    await conformance.check_deleted_subscription_forgets_its_events(transport)


async def test_a_group_of_several_types_gets_exactly_those_in_order_per_key(
    transport: NatsTransport,
) -> None:
    # On NATS 2.9 (one filter subject per consumer) tidings filters these client-side.
    tag = uuid7().hex[:12]
    created, updated, other = (f"catalog.{name}.{tag}" for name in ("created", "updated", "x"))
    group = f"multi-{tag}"
    await transport.declare_subscription(group, {created, updated})
    events = [
        event
        for trio in zip(
            conformance.make_events(20, 4, created, "catalog"),
            conformance.make_events(20, 4, other, "catalog"),
            conformance.make_events(20, 4, updated, "catalog"),
            strict=True,
        )
        for event in trio
    ]

    await transport.publish_batch("catalog", events)

    received = await conformance.collect(transport, group, {created, updated}, 40, timeout=30)
    wanted = [event for event in events if event.type != other]
    assert [event.id for event in received] == [event.id for event in wanted]


async def test_the_same_event_published_twice_is_stored_once(
    transport: NatsTransport, server_url: str, stream: str
) -> None:
    [event] = conformance.make_events(1, 1, "catalog.product.updated", "catalog")
    # Interest retention keeps only what some group wants: declare one first.
    await transport.declare_subscription(f"dedupe-{uuid7().hex[:12]}", {event.type})

    await transport.publish_batch("catalog", [event])
    await transport.publish_batch("catalog", [event])  # a relay retrying after a lost ack

    assert await stored_messages(server_url, stream) == 1


async def test_events_are_cloudevents_in_nats_headers_with_the_event_id_as_msg_id(
    transport: NatsTransport,
) -> None:
    group = f"headers-{uuid7().hex[:12]}"
    [event] = conformance.make_events(1, 1, "catalog.product.updated", "catalog")
    await transport.declare_subscription(group, {event.type})

    await transport.publish_batch("catalog", [event])

    async for delivery in transport.subscribe(group, {event.type}):
        await delivery.ack()
        break
    assert delivery.headers["Nats-Msg-Id"] == event.id
    assert delivery.headers["ce-id"] == event.id
    assert delivery.headers["ce-source"] == "catalog"
    assert delivery.headers["content-type"] == "application/json"
    assert conformance.decode(delivery) == event


async def test_messages_carry_the_headers_and_body_publish_async_sends(
    transport: NatsTransport, server_url: str, stream: str
) -> None:
    # The transport publishes with Client.publish; what a reader sees must not differ
    # from nats-py's JetStream publish_async of the same encoding.
    tag = uuid7().hex[:12]
    group, event_type = f"wire-{tag}", f"catalog.wire.{tag}"
    await transport.declare_subscription(group, {event_type})
    ours, theirs = conformance.make_events(2, 1, event_type, "catalog")
    await transport.publish_batch("catalog", [ours])
    client = await nats.connect(server_url)
    try:
        headers, body = encode(theirs)
        subject = event_subject(stream.lower(), "catalog", event_type)
        await client.jetstream().publish_async(subject, body, headers=headers, stream=stream)
        await client.jetstream().publish_async_completed()
    finally:
        await client.close()

    deliveries = []
    async for delivery in transport.subscribe(group, {event_type}):
        deliveries.append(delivery)
        await delivery.ack()
        if len(deliveries) == 2:
            break
    mine, reference = deliveries
    assert list(mine.headers) == list(reference.headers)
    assert "Nats-Expected-Stream" in mine.headers
    differing = {"ce-id", "Nats-Msg-Id", "ce-time"}
    assert {k: v for k, v in mine.headers.items() if k not in differing} == {
        k: v for k, v in reference.headers.items() if k not in differing
    }
    assert (mine.body, reference.body) == (encode(ours)[1], body)
    assert conformance.decode(mine) == ours


async def test_a_batch_the_server_does_not_acknowledge_fails_and_nothing_is_dropped_later(
    transport: NatsTransport, server_url: str, stream: str
) -> None:
    tag = uuid7().hex[:12]
    group, event_type = f"refused-{tag}", f"catalog.refused.{tag}"
    await transport.declare_subscription(group, {event_type})
    first, second, third = conformance.make_events(3, 1, event_type, "catalog")
    await transport.publish_batch("catalog", [first])
    client = await nats.connect(server_url)
    try:  # the stream goes away, and with it the group's consumer
        await client.jetstream().delete_stream(stream)
    finally:
        await client.close()

    with pytest.raises(PublishNotConfirmedError, match="did not acknowledge 1 of 1"):
        await transport.publish_batch("catalog", [second])
    # The stream comes back empty: nobody takes the type any more, so it is not sent
    # (interest retention would drop it), and the relay keeps it.
    assert await transport.publish_batch("catalog", [second, third]) == frozenset({0, 1})
    await transport.declare_subscription(group, {event_type})
    assert await transport.publish_batch("catalog", [second, third]) == frozenset()

    received = await conformance.collect(transport, group, {event_type}, 2, timeout=30)
    assert [e.id for e in received] == [second.id, third.id]


async def test_the_next_batch_after_a_lost_connection_reconnects(
    transport: NatsTransport,
) -> None:
    tag = uuid7().hex[:12]
    group, event_type = f"reconnect-{tag}", f"catalog.reconnect.{tag}"
    await transport.declare_subscription(group, {event_type})
    [event] = conformance.make_events(1, 1, event_type, "catalog")
    assert transport._client is not None
    await transport._client.close()  # as if the connection had been lost for good

    await transport.publish_batch("catalog", [event])

    received = await conformance.collect(transport, group, {event_type}, 1, timeout=30)
    assert [e.id for e in received] == [event.id]


async def test_a_consumer_that_loses_its_connection_raises_and_its_message_comes_back(
    transport: NatsTransport, url: str
) -> None:
    tag = uuid7().hex[:12]
    group, event_type = f"lost-{tag}", f"catalog.lost.{tag}"
    consumer = NatsTransport(f"{url}&ack_wait=1")  # redelivery after 1 s keeps this short
    await consumer.declare_subscription(group, {event_type})
    [event] = conformance.make_events(1, 1, event_type, "catalog")
    await transport.publish_batch("catalog", [event])
    deliveries = consumer.subscribe(group, {event_type})
    await anext(deliveries)  # handled, but never acknowledged
    assert consumer._client is not None

    await consumer._client.close()  # as if the connection had been lost for good

    with pytest.raises(TransportError, match="subscribe again"):
        await anext(deliveries)
    again = await conformance.collect(consumer, group, {event_type}, 1, timeout=30)
    assert [e.id for e in again] == [event.id]
    await consumer.close()


async def test_publishing_while_the_server_is_unreachable_raises_transport_error_promptly() -> None:
    transport = NatsTransport("nats://127.0.0.1:1?connect_timeout=2")
    [event] = conformance.make_events(1, 1, "catalog.product.updated", "catalog")

    started = time.monotonic()
    refused = re.escape("cannot connect to NATS at 127.0.0.1:1")
    with pytest.raises(TransportError, match=refused):
        await transport.publish_batch("catalog", [event])
    with pytest.raises(TransportError):
        await transport.connect()

    assert time.monotonic() - started < 10
    await transport.close()


@pytest.mark.parametrize("event_type", ["catalog.*.updated", "catalog.>", "a b", "a..b"])
async def test_event_types_that_are_not_plain_subject_tokens_are_refused_before_sending(
    event_type: str,
) -> None:
    transport = NatsTransport("nats://127.0.0.1:1")
    [event] = conformance.make_events(1, 1, event_type, "catalog")

    with pytest.raises(ConfigurationError, match="NATS subject"):
        await transport.publish_batch("catalog", [event])


async def test_an_event_no_group_subscribed_to_is_reported_unroutable(
    transport: NatsTransport,
) -> None:
    await conformance.check_unroutable_events_are_reported(transport)


async def test_a_read_loop_ends_when_nats_py_swallowed_its_cancellation(
    transport: NatsTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    # nats-py waits for each fetched message under asyncio.wait_for: a cancellation
    # landing as a message is queued for the fetch is lost on Python 3.11, and the loop
    # would fetch on for ever.
    group = f"swallow-{uuid7().hex[:12]}"
    [event] = conformance.make_events(1, 1, "catalog.product.updated", "catalog")
    await transport.declare_subscription(group, {event.type})
    await transport.publish_batch("catalog", [event])
    inside = conformance.CancelledInside()
    ours = f"{transport.options.subject_prefix}.".encode()
    process = NatsClient._process_msg

    async def queue_then_cancel(client: NatsClient, sid: int, subject: bytes, *rest: Any) -> None:
        await process(client, sid, subject, *rest)
        if bytes(subject).startswith(ours):  # the event, queued for the fetch
            inside.cancel()

    fetch = JetStreamContext.PullSubscription.fetch

    async def fetched(subscription: Any, *arguments: Any, **options: Any) -> Any:
        batch = await fetch(subscription, *arguments, **options)
        inside.returned()
        return batch

    monkeypatch.setattr(NatsClient, "_process_msg", queue_then_cancel)
    monkeypatch.setattr(JetStreamContext.PullSubscription, "fetch", fetched)
    await inside.check_the_read_ends(transport.subscribe(group, {event.type}))
