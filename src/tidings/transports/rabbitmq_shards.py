"""RabbitMQ transport: consuming a sharded group's shard queues (see
:mod:`tidings.transports.rabbitmq`, "Shards", and :mod:`tidings.transports.sharding`).

One channel, one ``basic.consume`` per shard read (``?prefetch=`` applies to each, as
to the one consumer of an unsharded group). The deliveries of all shards share the
channel's delivery tags, so acknowledging works exactly as for one queue.

Handing a shard over: when the :class:`ShardSet` revokes a shard, its consumer is
cancelled; RabbitMQ answers ``basic.cancel-ok`` after the last delivery of that
consumer on the channel, so once the cancel returned, a marker queued behind that
shard's arrivals says "nothing more will come": the deliveries before it are yielded
first, then :meth:`ShardSet.stopped`. What this process received but did not
acknowledge stays with it (a quorum queue keeps a cancelled consumer's messages
checked out until they are settled or the channel closes), and the consumer releases
its lease once they are settled. If the process dies instead, the queue returns its
checked-out messages and delivers them to the next consumer before newer ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from aio_pika.abc import AbstractConnection
from aiormq.abc import AbstractChannel as RawChannel
from aiormq.abc import DeliveredMessage

from tidings.transports.base import Delivery, Transport, TransportError
from tidings.transports.rabbitmq_consume import Received, reject, tag, to_delivery
from tidings.transports.rabbitmq_options import (
    BROKER_ERRORS,
    RabbitMQOptions,
    close_quietly,
    shard_queue_name,
)
from tidings.transports.sharding import ShardSet


@dataclass(frozen=True, slots=True)
class _Arrived:
    shard: int
    consumer_tag: str
    message: DeliveredMessage


@dataclass(frozen=True, slots=True)
class _Stopped:
    """Queued once a shard's consumer was cancelled: nothing of it follows."""

    shard: int
    consumer_tag: str


@dataclass(frozen=True, slots=True)
class _Lost:
    """The channel closed or the broker cancelled a consumer: the subscription ends."""

    reason: str


_Event = _Arrived | _Stopped | _Lost


async def consume_shards(
    transport: Transport,
    connection: AbstractConnection,
    options: RabbitMQOptions,
    where: str,
    group: str,
    max_batch: int,
    shards: ShardSet | None,
) -> AsyncGenerator[list[Delivery], None]:
    """Batches from the shard queues of ``group``: those ``shards`` grants (following
    its changes), or every shard when ``shards`` is None (one consumer reads all)."""
    events: asyncio.Queue[_Event] = asyncio.Queue()
    # Consumer tag -> shard of the consumers whose deliveries may still be yielded:
    # active ones and cancelled ones whose _Stopped marker is still queued.
    accepting: dict[str, int] = {}
    consuming: dict[int, str] = {}  # shard -> tag of its active consumer
    unacked: dict[int, DeliveredMessage] = {}  # the channel's, in delivery-tag order

    def on_close(_sender: object, exc: BaseException | None) -> None:
        events.put_nowait(_Lost(f"the channel closed ({exc!r})"))

    def on_cancel(frame: object) -> None:
        # The broker cancelled a consumer (its queue was deleted): that shard would
        # silently stop; end the subscription so the consumer subscribes again.
        events.put_nowait(_Lost(f"the broker cancelled a shard consumer ({frame!r})"))

    channel = connection.channel(publisher_confirms=False)
    try:
        async with asyncio.timeout(options.connect_timeout):
            await channel
            channel.close_callbacks.add(on_close)
            raw: RawChannel = await channel.get_underlay_channel()
            raw.on_consumer_cancel_callbacks.add(on_cancel)
            await raw.basic_qos(prefetch_count=options.prefetch)
    except BROKER_ERRORS as exc:
        await close_quietly(channel)
        raise TransportError(
            f"cannot open a channel to consume the shards of {group!r} on RabbitMQ at "
            f"{where}: {exc!r}; subscribe again when the broker is reachable"
        ) from exc

    async def start(shard: int) -> None:
        consumer_tag = f"tidings.{group}.{shard}.{uuid.uuid4().hex[:12]}"

        async def on_message(message: DeliveredMessage) -> None:
            events.put_nowait(_Arrived(shard, consumer_tag, message))

        accepting[consumer_tag] = shard
        consuming[shard] = consumer_tag
        await raw.basic_consume(
            shard_queue_name(group, shard), on_message, consumer_tag=consumer_tag
        )

    async def stop(shard: int) -> None:
        consumer_tag = consuming.pop(shard)
        await raw.basic_cancel(consumer_tag)
        # aiormq hands each delivery to its callback in a task started in frame
        # order; cancel-ok came after them, so their callbacks ran before this line.
        events.put_nowait(_Stopped(shard, consumer_tag))

    async def follow() -> None:
        """Start and cancel consumers as the shard set changes."""
        wanted = set(range(options.shards)) if shards is None else set(shards.granted)
        for shard in sorted(wanted - consuming.keys()):
            await start(shard)
        for shard in sorted(consuming.keys() - wanted):
            await stop(shard)
        if shards is not None:
            # Not those cancelled whose arrivals are still queued ahead of their marker.
            shards.stop_unread(accepting.values())

    async def watch(shards: ShardSet) -> None:
        try:
            while True:
                await shards.changed()
                await follow()
        except Exception as exc:  # any failure: the generator must hear of it, not hang
            events.put_nowait(_Lost(f"could not follow the shard grants ({exc!r})"))

    watcher: asyncio.Task[None] | None = None
    try:
        try:
            async with asyncio.timeout(options.connect_timeout):
                await follow()
        except BROKER_ERRORS as exc:
            raise TransportError(
                f"cannot start consuming the shards of {group!r} on RabbitMQ at {where}: "
                f"{exc!r}; subscribe again when the broker is reachable"
            ) from exc
        if shards is not None:
            watcher = asyncio.create_task(watch(shards))
        while True:
            event: _Event | None = await events.get()
            batch: list[Delivery] = []
            while isinstance(event, _Arrived):
                shard = accepting.get(event.consumer_tag)
                if shard is None:
                    # Not expected (cancel-ok follows a consumer's last delivery), but
                    # never yield a stopped shard's message: give it back, unharmed.
                    unacked[tag(event.message)] = event.message
                    await reject(Received(event.message, unacked), requeue=True)
                else:
                    delivery = to_delivery(transport, options.exchange, event.message, unacked)
                    batch.append(delivery if shards is None else shards.track(delivery, shard))
                event = None
                if len(batch) == max_batch or events.empty():
                    break
                event = events.get_nowait()
            if batch:
                yield batch
            if isinstance(event, _Stopped):
                # Everything that consumer delivered was yielded above or before.
                accepting.pop(event.consumer_tag, None)
                if shards is not None:
                    shards.stopped(event.shard)
            elif isinstance(event, _Lost):
                raise TransportError(
                    f"lost the RabbitMQ channel consuming the shards of {group!r} at "
                    f"{where}: {event.reason}; subscribe again (unacknowledged messages "
                    "are redelivered)"
                )
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        # Closing the channel hands every unacknowledged message back to its queue.
        channel.close_callbacks.discard(on_close)
        await close_quietly(channel)
