"""RabbitMQ transport: declaring the exchange and a group's queue (or shard queues)
and bindings (see :mod:`tidings.transports.rabbitmq`, "Topology" and "Shards")."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange

from tidings.errors import ConfigurationError
from tidings.transports.base import TransportError
from tidings.transports.rabbitmq_options import (
    BROKER_ERRORS,
    BUCKET_KEYS,
    RabbitMQOptions,
    close_quietly,
    queue_name,
    routing_key,
    shard_count_marker,
    shard_exchange_name,
    shard_queue_name,
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
    """Declare the group's quorum queue ``tidings.<group>`` bound to each event type,
    or with ``?shards=N`` (N > 1) its sharded topology (see :func:`declare_shards`)."""
    keys = sorted({routing_key(event_type) for event_type in event_types})
    try:
        async with asyncio.timeout(options.confirm_timeout):
            await _refuse_other_layout(connection, options, where, group)
            # A scratch channel: a failed declaration closes its channel, and that must
            # not be the publishing channel.
            channel = await connection.channel(publisher_confirms=False)
            try:
                exchange = await declare_exchange(channel, options)
                if options.shards > 1:
                    await declare_shards(channel, exchange, options, group, keys)
                else:
                    queue = await channel.declare_queue(
                        queue_name(group), durable=True, arguments=queue_arguments(options)
                    )
                    for key in keys:
                        await queue.bind(exchange, routing_key=key)
            finally:
                await close_quietly(channel)
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        recorded = _recorded_count(exc)
        if recorded is not None:
            raise _count_mismatch(group, where, recorded, options.shards) from exc
        raise ConfigurationError(
            f"RabbitMQ refused to declare the subscription of {group!r} (queue "
            f"{queue_name(group)!r}, exchange {options.exchange!r}) ({exc}); one already "
            "exists with other settings (e.g. single_active_consumer, delivery_limit, queue "
            "type): delete it or use matching URL options"
        ) from exc
    except BROKER_ERRORS as exc:
        raise TransportError(
            f"cannot declare the subscription of {group!r} on RabbitMQ at "
            f"{where}: {exc!r}; retry when the broker is reachable"
        ) from exc


async def declare_shards(
    channel: AbstractChannel,
    exchange: AbstractExchange,
    options: RabbitMQOptions,
    group: str,
    keys: Collection[str],
) -> None:
    """The sharded topology of ``group``: ``?shards=`` quorum queues fed by the group's
    direct shard exchange, which the topic exchange feeds with the group's types.

    The shard exchange routes on the bucket key each event carries in ``BCC``
    (:data:`~tidings.transports.rabbitmq_options.BUCKETS` of them, bucket ``b`` bound to
    shard ``b % N``): a key's shard is a function of the key and N alone, so it stays
    the same when bindings are declared again or RabbitMQ restarts. (A consistent-hash
    exchange, tried first, maps keys by the order its bindings were added, and RabbitMQ
    recovers them in another order on restart: three keys in four changed shard, which
    breaks per-key order while the old shard still holds their earlier events.)

    The shard exchange's ``alternate-exchange`` is ``tidings.<group>.shards:<N>``: the
    one exchange argument RabbitMQ compares when an exchange is declared again, so a
    declaration with another count fails (PRECONDITION_FAILED). It is a fanout exchange
    bound to shard 0: a message without a bucket key (from another publisher) reaches
    shard 0, in order, never dropped; with no shard queue bound, a message is
    unroutable and comes back to the publisher (mandatory).
    """
    # First, so that a mismatching count fails before anything else is created.
    marker = shard_count_marker(group, options.shards)
    shard_exchange = await channel.declare_exchange(
        shard_exchange_name(group),
        aio_pika.ExchangeType.DIRECT,
        durable=True,
        arguments={"alternate-exchange": marker},
    )
    keyless = await channel.declare_exchange(marker, aio_pika.ExchangeType.FANOUT, durable=True)
    # Single active consumer on every shard, whatever the URL says: should two
    # processes ever consume one shard (a lease lost without the process knowing), the
    # broker still delivers to one of them only.
    arguments = {**queue_arguments(options), "x-single-active-consumer": True}
    for shard in range(options.shards):
        queue = await channel.declare_queue(
            shard_queue_name(group, shard), durable=True, arguments=arguments
        )
        if shard == 0:
            await queue.bind(keyless)
    # One binding per bucket without waiting for each answer (binding again is a
    # no-op); the passive declaration after them returns once the broker has made them
    # all, and a refused one closes the channel instead.
    raw = await channel.get_underlay_channel()
    for bucket, bucket_key in enumerate(BUCKET_KEYS):
        await raw.queue_bind(
            shard_queue_name(group, bucket % options.shards),
            shard_exchange.name,
            routing_key=bucket_key,
            nowait=True,
        )
    await channel.declare_exchange(shard_exchange.name, passive=True)
    # Last: the group receives events only once every bucket has its shard, so no key
    # ever changes shard while the topology is being built.
    for key in keys:
        await shard_exchange.bind(exchange, routing_key=key)


async def delete_subscription(
    connection: AbstractConnection, options: RabbitMQOptions, where: str, group: str
) -> None:
    """Delete the group's queue ``tidings.<group>`` (or its shard queues and hash
    exchange) and the messages they hold."""
    try:
        async with asyncio.timeout(options.confirm_timeout):
            count = await recorded_shards(connection, group)
            channel = await connection.channel(publisher_confirms=False)
            try:
                await channel.queue_delete(queue_name(group))
                if count is not None:
                    # The exchanges first: nothing is routed to a shard being deleted.
                    await channel.exchange_delete(shard_exchange_name(group))
                    if count:
                        await channel.exchange_delete(shard_count_marker(group, count))
                    for shard in range(count or options.shards):
                        await channel.queue_delete(shard_queue_name(group, shard))
            finally:
                await close_quietly(channel)
    except BROKER_ERRORS as exc:
        raise TransportError(
            f"cannot delete the subscription of {group!r} on RabbitMQ at "
            f"{where}: {exc!r}; retry when the broker is reachable"
        ) from exc


async def recorded_shards(connection: AbstractConnection, group: str) -> int | None:
    """The shard count the broker's topology records for ``group``; None if unsharded,
    0 if sharded but the broker's answer did not say the count.

    AMQP cannot read an exchange's arguments, so this declares the shard exchange again
    with the count 0, which no topology has, and reads the recorded count from the
    broker's refusal.
    """
    name = shard_exchange_name(group)
    if not await _exists(connection, lambda channel: channel.declare_exchange(name, passive=True)):
        return None
    channel = await connection.channel(publisher_confirms=False)
    try:
        await channel.declare_exchange(
            name,
            aio_pika.ExchangeType.DIRECT,
            durable=True,
            arguments={"alternate-exchange": shard_count_marker(group, 0)},
        )
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        return _recorded_count(exc) or 0
    finally:
        await close_quietly(channel)
    return 0  # pragma: no cover - the exchange exists, so the probe is refused


async def _refuse_other_layout(
    connection: AbstractConnection, options: RabbitMQOptions, where: str, group: str
) -> None:
    """A sharded group declared unsharded (or the reverse) would receive every event
    twice, in two layouts: refuse it before declaring anything."""
    if options.shards == 1:
        recorded = await recorded_shards(connection, group)
        if recorded is not None:
            raise _count_mismatch(group, where, recorded, 1)
        return
    name = queue_name(group)
    if await _exists(connection, lambda channel: channel.declare_queue(name, passive=True)):
        raise ConfigurationError(
            f"group {group!r} has an unsharded subscription on RabbitMQ at {where} (queue "
            f"{name!r}), the URL asks ?shards={options.shards}: drop ?shards= from the "
            "URL, or let the group's consumers finish the queue, stop them and delete the "
            "subscription (tidings declare APP --delete --yes) before sharding it"
        )


async def _exists(
    connection: AbstractConnection, declare: Callable[[AbstractChannel], Awaitable[object]]
) -> bool:
    """Whether a passive declaration succeeds (a 404 closes its scratch channel)."""
    channel = await connection.channel(publisher_confirms=False)
    try:
        await declare(channel)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return False
    finally:
        await close_quietly(channel)
    return True


_RECORDED = re.compile(r"current is (?:the value )?'[^']*\.shards:(\d+)'")


def _recorded_count(exc: BaseException) -> int | None:
    """The shard count in a refusal to redeclare a shard exchange with another one."""
    found = _RECORDED.search(str(exc))
    return int(found.group(1)) if found else None


def _count_mismatch(group: str, where: str, recorded: int, asked: int) -> ConfigurationError:
    count = str(recorded) if recorded else "another number of"  # 0: unreadable
    return ConfigurationError(
        f"group {group!r} has {count} shards on RabbitMQ at {where} (recorded on "
        f"exchange {shard_exchange_name(group)!r}), the URL asks for {asked}: every "
        f"consumer of a group must use the same ?shards= (here ?shards={recorded or '?'}); "
        "to change the count, let the consumers finish, stop them and delete the "
        "subscription (tidings declare APP --delete --yes)"
    )
