"""RabbitMQ transport: encoding events as AMQP messages and publishing a batch with
pipelined publisher confirms (see :mod:`tidings.transports.rabbitmq`, "Publishing")."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

import aiormq
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic
from pamqp.common import FieldTable

from tidings.contracts.cloud_event import CloudEvent
from tidings.contracts.cloudevents import encode_binary
from tidings.contracts.envelope import partition_slot
from tidings.transports.base import PublishNotConfirmedError, Unroutable
from tidings.transports.rabbitmq_options import BUCKET_KEYS, BUCKETS, HEADER_PREFIX, routing_key

#: One message ready to send: body, properties and routing key.
Outgoing = tuple[bytes, Basic.Properties, str]


def encode(source: str, event: CloudEvent) -> tuple[bytes, Basic.Properties]:
    """The AMQP body and properties of ``event`` (CloudEvents binary mode), with the
    routing key of its bucket in ``BCC`` for sharded groups (RabbitMQ strips it)."""
    attributes, body = encode_binary(event, prefix=HEADER_PREFIX)
    content_type = attributes.pop("content-type")
    headers = cast(dict[str, object], attributes)  # a fresh dict: extended, not copied
    headers["BCC"] = [BUCKET_KEYS[partition_slot(event.subject or event.source) % BUCKETS]]
    properties = Basic.Properties(
        content_type=content_type,
        headers=cast(FieldTable, headers),
        delivery_mode=2,  # persistent
        message_id=event.id,
        message_type=event.type,
        app_id=source,
    )
    return body, properties


def encode_batch(source: str, events: Sequence[CloudEvent]) -> list[Outgoing]:
    """Every message of a batch; an invalid type fails before anything is sent."""
    return [(*encode(source, event), routing_key(event.type)) for event in events]


async def publish_confirmed(
    channel: aiormq.Channel,
    exchange: str,
    messages: Sequence[Outgoing],
    *,
    confirm_timeout: float,
    where: str,
    drop_channel: Callable[[], Awaitable[None]],
) -> Unroutable:
    """Send ``messages`` in order (mandatory) and await every confirmation together.

    Returns the positions the broker returned as unroutable; raises
    :class:`PublishNotConfirmedError` (after ``drop_channel``) when any message was not
    confirmed in time or was nacked.
    """
    # Tasks start in creation order and aiormq writes frames under a FIFO lock,
    # so the broker receives the batch in order while confirms are outstanding.
    # Confirms are awaited; waiting for each frame to be written would add nothing.
    publishes = [
        asyncio.ensure_future(
            channel.basic_publish(
                body,
                exchange=exchange,
                routing_key=key,
                properties=properties,
                mandatory=True,
                wait=False,
            )
        )
        for body, properties, key in messages
    ]
    try:
        async with asyncio.timeout(confirm_timeout):
            results = await asyncio.gather(*publishes, return_exceptions=True)
    except TimeoutError:
        await drop_channel()
        raise PublishNotConfirmedError(
            f"RabbitMQ at {where} did not confirm a batch of {len(messages)} "
            f"events within {confirm_timeout:g} s; retry the batch "
            "(raise ?confirm_timeout= if the broker is just slow)"
        ) from None
    # aiormq resolves a returned message's confirmation with the message itself.
    unroutable = frozenset(
        index for index, result in enumerate(results) if isinstance(result, DeliveredMessage)
    )
    failures = [
        result for result in results if not isinstance(result, Basic.Ack | DeliveredMessage)
    ]
    if failures:
        await drop_channel()
        raise PublishNotConfirmedError(
            f"RabbitMQ at {where} did not confirm {len(failures)} of "
            f"{len(messages)} events (first: {failures[0]!r}); retry the whole batch"
        ) from (failures[0] if isinstance(failures[0], BaseException) else None)
    return unroutable
