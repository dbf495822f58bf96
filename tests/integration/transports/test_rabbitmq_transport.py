"""The RabbitMQ transport against a real broker: the shared conformance checks, then what
is specific to RabbitMQ (message properties, unreachable broker, queue identity).

Every test publishes to an exchange of its own and deletes it, and the queues of the
groups it declared, when it ends.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Collection

import aio_pika
import pytest

from tests.integration.transports import conformance
from tests.services import require
from tidings.domain.ids import uuid7
from tidings.errors import ConfigurationError
from tidings.transports.base import TransportError
from tidings.transports.rabbitmq import RabbitMQTransport


class TrackedRabbitMQTransport(RabbitMQTransport):
    """Remembers the queues it declared so that the test can delete them."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.groups: set[str] = set()

    async def declare_subscription(self, group: str, event_types: Collection[str]) -> None:
        self.groups.add(group)
        await super().declare_subscription(group, event_types)


def with_options(url: str, **options: str) -> str:
    query = "&".join(f"{name}={value}" for name, value in options.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


@pytest.fixture
def broker_url() -> str:
    return require("rabbitmq")


@pytest.fixture
def exchange() -> str:
    return f"tidings.test.{uuid7().hex[:12]}"


@pytest.fixture
async def opened(broker_url: str, exchange: str) -> AsyncIterator[list[TrackedRabbitMQTransport]]:
    """Transports the test opened; closed, and their queues and exchange deleted, at the end."""
    transports: list[TrackedRabbitMQTransport] = []
    yield transports
    for transport in transports:
        await transport.close()
    connection = await aio_pika.connect(broker_url)
    async with connection:
        channel = await connection.channel()
        for group in {group for transport in transports for group in transport.groups}:
            await channel.queue_delete(f"tidings.{group}")
        await channel.exchange_delete(exchange)


@pytest.fixture
async def transport(
    broker_url: str, exchange: str, opened: list[TrackedRabbitMQTransport]
) -> TrackedRabbitMQTransport:
    transport = TrackedRabbitMQTransport(with_options(broker_url, exchange=exchange))
    opened.append(transport)
    await transport.connect()
    return transport


async def test_every_group_receives_every_event_in_order_per_key(
    transport: RabbitMQTransport,
) -> None:
    await conformance.check_fan_out_and_order(transport)


async def test_a_group_receives_only_the_types_it_subscribed_to(
    transport: RabbitMQTransport,
) -> None:
    await conformance.check_type_filtering(transport)


async def test_signed_events_verify_as_delivered(transport: RabbitMQTransport) -> None:
    await conformance.check_signatures_survive(transport)


async def test_a_delivery_given_back_is_delivered_again(transport: RabbitMQTransport) -> None:
    await conformance.check_unacked_is_redelivered(transport)


async def test_a_deleted_subscription_forgets_what_it_kept(transport: RabbitMQTransport) -> None:
    await conformance.check_deleted_subscription_forgets_its_events(transport)


async def test_an_event_no_group_subscribed_to_is_confirmed_and_reported_unroutable(
    transport: RabbitMQTransport,
) -> None:
    await conformance.check_unroutable_events_are_reported(transport)


async def test_messages_are_persistent_cloudevents_identified_by_the_event_id(
    transport: TrackedRabbitMQTransport, broker_url: str
) -> None:
    group = f"props-{uuid7().hex[:12]}"
    [event] = conformance.make_events(1, 1, "catalog.product.updated", "catalog")
    await transport.declare_subscription(group, {event.type})

    await transport.publish_batch("catalog", [event])

    async with await aio_pika.connect(broker_url) as connection:
        channel = await connection.channel()
        queue = await channel.get_queue(f"tidings.{group}", ensure=False)
        message = await queue.get(timeout=10, fail=True)
        assert message is not None
        await message.ack()
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.message_id == event.id
    assert message.content_type == "application/json"
    headers = message.headers or {}
    assert headers["cloudEvents:id"] == event.id
    assert headers["cloudEvents:type"] == "catalog.product.updated"
    assert headers["cloudEvents:source"] == "catalog"
    assert headers["cloudEvents:subject"] == event.subject
    assert message.body == event.data_json


async def test_the_next_batch_after_a_lost_connection_reconnects(
    transport: RabbitMQTransport,
) -> None:
    tag = uuid7().hex[:12]
    group, event_type = f"reconnect-{tag}", f"catalog.reconnect.{tag}"
    await transport.declare_subscription(group, {event_type})
    [event] = conformance.make_events(1, 1, event_type, "catalog")
    assert transport._connection is not None
    await transport._connection.close()  # as if the broker had dropped it

    await transport.publish_batch("catalog", [event])

    received = await conformance.collect(transport, group, {event_type}, 1, timeout=30)
    assert [e.id for e in received] == [event.id]


async def test_a_consumer_that_loses_its_connection_raises_and_its_message_comes_back(
    transport: RabbitMQTransport,
) -> None:
    tag = uuid7().hex[:12]
    group, event_type = f"lost-{tag}", f"catalog.lost.{tag}"
    await transport.declare_subscription(group, {event_type})
    [event] = conformance.make_events(1, 1, event_type, "catalog")
    await transport.publish_batch("catalog", [event])
    deliveries = transport.subscribe(group, {event_type})
    await anext(deliveries)  # handled, but never acknowledged
    assert transport._connection is not None

    await transport._connection.close()  # as if the broker had dropped it

    with pytest.raises(TransportError, match="subscribe again"):
        await anext(deliveries)
    again = await conformance.collect(transport, group, {event_type}, 1, timeout=30)
    assert [e.id for e in again] == [event.id]


async def test_publishing_while_the_broker_is_unreachable_raises_transport_error_promptly() -> None:
    transport = RabbitMQTransport("amqp://guest:guest@127.0.0.1:1/?connect_timeout=2")
    [event] = conformance.make_events(1, 1, "catalog.product.updated", "catalog")

    started = time.monotonic()
    refused = re.escape("cannot connect to RabbitMQ at 127.0.0.1:1")
    with pytest.raises(TransportError, match=refused):
        await transport.publish_batch("catalog", [event])
    with pytest.raises(TransportError):
        await transport.connect()

    assert time.monotonic() - started < 10
    await transport.close()


async def test_single_active_consumer_is_part_of_the_queue_identity(
    transport: TrackedRabbitMQTransport,
    broker_url: str,
    exchange: str,
    opened: list[TrackedRabbitMQTransport],
) -> None:
    group = f"sac-{uuid7().hex[:12]}"
    await transport.declare_subscription(group, {"catalog.product.updated"})
    exclusive = TrackedRabbitMQTransport(
        with_options(broker_url, exchange=exchange, single_active_consumer="true")
    )
    opened.append(exclusive)

    with pytest.raises(ConfigurationError, match="single_active_consumer"):
        await exclusive.declare_subscription(group, {"catalog.product.updated"})


async def test_event_types_that_would_be_binding_wildcards_are_refused_before_sending() -> None:
    transport = RabbitMQTransport("amqp://guest:guest@127.0.0.1:1/")
    [event] = conformance.make_events(1, 1, "catalog.*.updated", "catalog")

    with pytest.raises(ConfigurationError, match="routing key"):
        await transport.publish_batch("catalog", [event])
