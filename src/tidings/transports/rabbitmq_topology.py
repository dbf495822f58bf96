"""RabbitMQ transport: declaring the exchange and a group's queue and bindings
(see :mod:`tidings.transports.rabbitmq`, "Topology")."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange

from tidings.errors import ConfigurationError
from tidings.transports.base import TransportError
from tidings.transports.rabbitmq_options import (
    BROKER_ERRORS,
    RabbitMQOptions,
    close_quietly,
    queue_name,
    routing_key,
)


async def declare_exchange(channel: AbstractChannel, options: RabbitMQOptions) -> AbstractExchange:
    """The durable topic exchange every producer publishes to."""
    return await channel.declare_exchange(
        options.exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )


def queue_arguments(options: RabbitMQOptions) -> dict[str, Any]:
    """The arguments of a group's quorum queue (part of its identity on the broker)."""
    arguments: dict[str, Any] = {"x-queue-type": "quorum"}
    if options.single_active_consumer:
        arguments["x-single-active-consumer"] = True
    if options.delivery_limit is not None:
        arguments["x-delivery-limit"] = options.delivery_limit
    return arguments


async def declare_subscription(
    connection: AbstractConnection,
    options: RabbitMQOptions,
    where: str,
    group: str,
    event_types: Collection[str],
) -> None:
    """Declare the group's quorum queue ``tidings.<group>`` bound to each event type."""
    name = queue_name(group)
    keys = sorted({routing_key(event_type) for event_type in event_types})
    arguments = queue_arguments(options)
    # A scratch channel: a failed declaration closes its channel, and that must not
    # be the publishing channel.
    try:
        async with asyncio.timeout(options.confirm_timeout):
            channel = await connection.channel(publisher_confirms=False)
            try:
                exchange = await declare_exchange(channel, options)
                queue = await channel.declare_queue(name, durable=True, arguments=arguments)
                for key in keys:
                    await queue.bind(exchange, routing_key=key)
            finally:
                await close_quietly(channel)
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        raise ConfigurationError(
            f"RabbitMQ refused to declare queue {name!r} or exchange "
            f"{options.exchange!r} ({exc}); one already exists with other "
            "settings (e.g. single_active_consumer, delivery_limit, queue type): delete "
            "it or use matching URL options"
        ) from exc
    except BROKER_ERRORS as exc:
        raise TransportError(
            f"cannot declare the subscription of {group!r} on RabbitMQ at "
            f"{where}: {exc!r}; retry when the broker is reachable"
        ) from exc


async def delete_subscription(
    connection: AbstractConnection, options: RabbitMQOptions, where: str, group: str
) -> None:
    """Delete the group's queue ``tidings.<group>`` and the messages it holds."""
    try:
        async with asyncio.timeout(options.confirm_timeout):
            channel = await connection.channel(publisher_confirms=False)
            try:
                await channel.queue_delete(queue_name(group))
            finally:
                await close_quietly(channel)
    except BROKER_ERRORS as exc:
        raise TransportError(
            f"cannot delete the subscription of {group!r} on RabbitMQ at "
            f"{where}: {exc!r}; retry when the broker is reachable"
        ) from exc
