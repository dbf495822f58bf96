"""RabbitMQ transport: consuming a queue into batches, and acknowledging what arrived
(see :mod:`tidings.transports.rabbitmq`, "Failures" and "Per-key order")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aio_pika.abc import AbstractConnection
from aiormq.abc import DeliveredMessage

from tidings.transports.base import Delivery, TransportError
from tidings.transports.rabbitmq_options import BROKER_ERRORS, RabbitMQOptions, close_quietly

if TYPE_CHECKING:
    from tidings.transports.base import Transport


@dataclass(slots=True)
class Received:
    """The transport token of a delivery: the message and its channel's unacked map."""

    message: DeliveredMessage
    unacked: dict[int, DeliveredMessage]


def tag(message: DeliveredMessage) -> int:
    """The delivery tag (per channel, increasing in arrival order)."""
    return int(getattr(message.delivery, "delivery_tag", 0) or 0)


def message_id(message: DeliveredMessage) -> str | None:
    """The AMQP message id (the event id) for error messages."""
    return message.header.properties.message_id


def to_delivery(
    transport: Transport,
    exchange: str,
    message: DeliveredMessage,
    unacked: dict[int, DeliveredMessage],
) -> Delivery:
    """A :class:`Delivery` of ``message``, remembered in ``unacked`` until settled."""
    unacked[tag(message)] = message
    properties = message.header.properties
    headers: dict[str, Any] = dict(properties.headers or {})
    if properties.content_type:
        headers["content-type"] = properties.content_type
    return Delivery(
        body=message.body,
        headers=headers,
        redelivered=bool(getattr(message.delivery, "redelivered", False)),
        # Only tidings' exchange routes by type: a message put straight into the
        # queue (default exchange) carries the queue's name as routing key.
        routed_type=(
            getattr(message.delivery, "routing_key", None)
            if getattr(message.delivery, "exchange", None) == exchange
            else None
        ),
        _transport_token=Received(message, unacked),
        _transport=transport,
    )


async def consume_batches(
    transport: Transport,
    connection: AbstractConnection,
    options: RabbitMQOptions,
    where: str,
    queue: str,
    max_batch: int,
) -> AsyncGenerator[list[Delivery], None]:
    """Every message of ``queue`` received while the previous batch was handled.

    Consumes through aio-pika's underlying aiormq channel: the deliveries go
    straight to the consumer, without building an aio-pika message object for each.
    """
    arrivals: asyncio.Queue[DeliveredMessage | None] = asyncio.Queue()

    async def on_message(message: DeliveredMessage) -> None:
        arrivals.put_nowait(message)

    def on_close(_sender: object, _exc: BaseException | None) -> None:
        arrivals.put_nowait(None)  # wakes the generator so it can report the loss

    # Unacknowledged messages of this channel by delivery tag, in arrival (= tag)
    # order: ack_many can then acknowledge a leading run with one frame.
    unacked: dict[int, DeliveredMessage] = {}
    channel = connection.channel(publisher_confirms=False)
    try:
        async with asyncio.timeout(options.connect_timeout):
            await channel
            channel.close_callbacks.add(on_close)
            underlay = await channel.get_underlay_channel()
            await underlay.basic_qos(prefetch_count=options.prefetch)
            await underlay.basic_consume(queue, on_message, no_ack=False)
    except BROKER_ERRORS as exc:
        await close_quietly(channel)
        raise TransportError(
            f"cannot start consuming {queue!r} on RabbitMQ at "
            f"{where}: {exc!r}; subscribe again when the broker is reachable"
        ) from exc
    try:
        while True:
            message = await arrivals.get()
            batch: list[Delivery] = []
            while message is not None:
                batch.append(to_delivery(transport, options.exchange, message, unacked))
                if len(batch) == max_batch or arrivals.empty():
                    break
                message = arrivals.get_nowait()
            if batch:
                yield batch
            if message is None:
                raise TransportError(
                    f"lost the RabbitMQ channel consuming {queue!r} at "
                    f"{where}; subscribe again (unacknowledged messages are "
                    "redelivered)"
                )
    finally:
        # Closing the channel hands every unacknowledged message back to the queue.
        channel.close_callbacks.discard(on_close)
        await close_quietly(channel)


async def acknowledge(received: Received, *, multiple: bool) -> None:
    """``basic.ack`` on the channel the message arrived on."""
    received.unacked.pop(tag(received.message), None)
    try:
        await received.message.channel.basic_ack(tag(received.message), multiple=multiple)
    except BROKER_ERRORS as exc:
        raise TransportError(
            f"could not acknowledge message {message_id(received.message)!r}: {exc!r}; "
            "the broker will deliver it again, which the inbox makes harmless"
        ) from exc


async def acknowledge_many(received: Sequence[Received]) -> None:
    """One ``multiple`` ack for the leading run of the channel's unacknowledged
    messages that are all in ``received``; single acks for the rest."""
    if not received:
        return
    unacked = received[0].unacked
    wanted = {tag(item.message) for item in received if item.unacked is unacked}
    run: list[int] = []
    for delivery_tag in unacked:
        if delivery_tag not in wanted:
            break
        run.append(delivery_tag)
    settled: set[int] = set()
    if len(run) > 1:
        last = Received(unacked[run[-1]], unacked)
        for delivery_tag in run[:-1]:
            del unacked[delivery_tag]
        await acknowledge(last, multiple=True)
        settled.update(run)
    for item in received:
        if item.unacked is not unacked or tag(item.message) not in settled:
            await acknowledge(item, multiple=False)


async def reject(received: Received, *, requeue: bool) -> None:
    """``basic.nack``: back to the queue, or dropped when ``requeue`` is False."""
    received.unacked.pop(tag(received.message), None)
    try:
        await received.message.channel.basic_nack(tag(received.message), requeue=requeue)
    except BROKER_ERRORS as exc:
        raise TransportError(
            f"could not reject message {message_id(received.message)!r}: {exc!r}; "
            "the broker will deliver it again when the channel closes"
        ) from exc
