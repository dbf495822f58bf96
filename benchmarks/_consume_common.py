"""What the consumer benchmarks share: the effect table, the tidings handler, the raw
(hand-written aio-pika + asyncpg) consumer they are compared with, and a fast fill of
RabbitMQ queues.

Both sides read the same messages - encoded by the RabbitMQ transport's own encoder,
so byte for byte what the relay sends - and do the same work for each: decode the
CloudEvent headers and JSON body, validate the payload with the same pydantic model,
insert the inbox row (skipping duplicates) and one effect row, one transaction per
micro-batch, acknowledge after commit.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

import aio_pika
import asyncpg
from sqlalchemy import BigInteger, Column, MetaData, String, Table, insert, text

from _relay_common import KEYS, SOURCE, ThingUpdatedIntegrationEvent, sync_engine
from tidings import BoundedContext, IntegrationEventHandler
from tidings.contracts.cloudevents import CloudEvent, format_time
from tidings.transports import open_transport
from tidings.transports.base import Delivery, Transport
from tidings.transports.rabbitmq import HEADER_PREFIX, _encode, _parse_url

PREFETCH = 256
BATCH = 200
NAME = "Desk lamp with a long enough name"
EVENT_TYPE = ThingUpdatedIntegrationEvent.event_type

metadata = MetaData()
# The handlers' business write: one row per event (the primary key costs both sides alike).
effects = Table(
    "bench_effects",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("thing_id", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
)

_insert_effect = insert(effects)


class RecordEffect(IntegrationEventHandler):
    """The tidings side's handler: one effect row per event, in the consumer's transaction.

    ``handle_batch`` writes a micro-batch's rows with one statement, as the raw
    consumer does; ``handle`` is what retries and dead-letter replays use.
    """

    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    async def handle(self, event: ThingUpdatedIntegrationEvent) -> None:
        await self.handle_batch([event])

    async def handle_batch(self, events: Sequence[ThingUpdatedIntegrationEvent]) -> None:
        await self._context.async_session.execute(
            _insert_effect,
            [
                {"event_id": str(event.event_id), "thing_id": event.thing_id, "seq": event.seq}
                for event in events
            ],
        )


def consuming_context(url: str, broker_url: str, name: str) -> BoundedContext:
    """The consuming context: its tables, the effect table and :class:`RecordEffect`."""
    context = BoundedContext(name, database_url=url, broker_url=broker_url)
    context.create_tables()
    metadata.create_all(context.engine)
    context.subscribe(RecordEffect(context))
    return context


def make_events(count: int, *, start: int = 0) -> list[CloudEvent]:
    """CloudEvents shaped as the relay builds them from tidings' outbox rows."""
    now = format_time(datetime.now(UTC))
    events = []
    for seq in range(start, start + count):
        thing = f"thing-{seq % KEYS}"
        payload = ThingUpdatedIntegrationEvent(thing_id=thing, seq=seq, name=NAME)
        events.append(
            CloudEvent(
                id=str(uuid.uuid4()),
                source=SOURCE,
                type=EVENT_TYPE,
                dataversion=1,
                time=now,
                subject=thing,
                correlationid=str(uuid.uuid4()),
                data_json=payload.__pydantic_serializer__.to_json(
                    payload, exclude={"event_id", "occurred_at"}
                ),
            )
        )
    return events


async def declare_queue(channel: Any, name: str) -> None:
    """A durable quorum queue, as the RabbitMQ transport declares for a group."""
    await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})


async def fill_queues(amqp_url: str, queues: Sequence[str], events: Sequence[CloudEvent]) -> None:
    """Publish ``events`` straight to each queue (default exchange), confirmed, windowed.

    The messages are the transport's own (``_encode``): same body, headers and
    properties as a relay sends.
    """
    client_url, _ = _parse_url(amqp_url)
    connection = await aio_pika.connect(client_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        underlay = await channel.get_underlay_channel()
        messages = [_encode(SOURCE, event) for event in events]
        window = 1000
        for first in range(0, len(messages), window):
            await asyncio.gather(
                *(
                    underlay.basic_publish(body, routing_key=queue, properties=properties)
                    for body, properties in messages[first : first + window]
                    for queue in queues
                )
            )
    finally:
        await connection.close()


async def purge_queues(amqp_url: str, queues: Collection[str]) -> None:
    client_url, _ = _parse_url(amqp_url)
    connection = await aio_pika.connect(client_url)
    try:
        channel = await connection.channel()
        for name in queues:
            queue = await channel.get_queue(name, ensure=False)
            await queue.purge()
    finally:
        await connection.close()


async def remove_queues(amqp_url: str, group: str, raw_queue: str) -> None:
    """Leave RabbitMQ as found: the group's subscription, the raw queue, the exchange."""
    async with open_transport(amqp_url) as transport:
        await transport.delete_subscription(group)
    client_url, options = _parse_url(amqp_url)
    connection = await aio_pika.connect(client_url)
    try:
        channel = await connection.channel()
        await channel.queue_delete(raw_queue)
        await channel.exchange_delete(options.exchange)
    finally:
        await connection.close()


def empty_consumer_tables(url: str) -> None:
    """Empty the inbox and the effect table, for a side to start clean."""
    engine = sync_engine(url)
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE tidings_inbox, bench_effects"))
    engine.dispose()


def effect_rows(url: str) -> int:
    engine = sync_engine(url)
    with engine.connect() as connection:
        count = int(connection.execute(text("SELECT count(*) FROM bench_effects")).scalar_one())
    engine.dispose()
    return count


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


class RawConsumer:
    """A hand-written consumer: aio-pika + asyncpg, the same work as tidings' consumer.

    Deliveries go from aio-pika's callback to an ``asyncio.Queue``; the loop takes the
    first and whatever else has arrived (up to :data:`BATCH`), decodes the binary-mode
    CloudEvent (checks ``specversion``, type and version, JSON-parses the body),
    validates the payload with the same pydantic model, and in one transaction inserts
    the inbox rows with ``ON CONFLICT DO NOTHING RETURNING`` and the effect rows of the
    fresh events (``unnest`` arrays, one statement each). After commit it acknowledges
    every message of the batch with one ``multiple=True`` ack.
    """

    def __init__(self, database_url: str, amqp_url: str, queue: str, group: str) -> None:
        self.database_url = database_url
        self.amqp_url = amqp_url
        self.queue = queue
        self.group = group
        self.handled = 0
        self.duplicates = 0
        self.on_acked: Any = None  # called with (event ids, time.monotonic()) after acks

    async def run(self, count: int) -> float:
        """Consume until ``count`` messages were acknowledged; seconds from consume to done."""
        database = await asyncpg.connect(asyncpg_dsn(self.database_url))
        client_url, _ = _parse_url(self.amqp_url)
        connection = await aio_pika.connect(client_url)
        try:
            channel = await connection.channel(publisher_confirms=False)
            await channel.set_qos(prefetch_count=PREFETCH)
            queue = await channel.get_queue(self.queue, ensure=False)
            arrivals: asyncio.Queue[Any] = asyncio.Queue()

            async def on_message(message: Any) -> None:
                arrivals.put_nowait(message)

            start = time.perf_counter()
            await queue.consume(on_message)
            acked = 0
            while acked < count:
                batch = [await arrivals.get()]
                while len(batch) < BATCH and not arrivals.empty():
                    batch.append(arrivals.get_nowait())
                await self._handle(database, batch)
                await batch[-1].ack(multiple=True)
                acked += len(batch)
                if self.on_acked is not None:
                    self.on_acked(batch, time.monotonic())
            return time.perf_counter() - start
        finally:
            await connection.close()
            await database.close()

    async def _handle(self, database: Any, batch: list[Any]) -> None:
        ids: list[str] = []
        things: list[str] = []
        seqs: list[int] = []
        for message in batch:
            event = _decode(message)
            ids.append(str(event.event_id))
            things.append(event.thing_id)
            seqs.append(event.seq)
        async with database.transaction():
            fresh = {
                row[0]
                for row in await database.fetch(
                    "INSERT INTO tidings_inbox (consumer, event_id, processed_at) "
                    "SELECT $1, unnest($2::text[]), $3 ON CONFLICT DO NOTHING RETURNING event_id",
                    self.group,
                    ids,
                    datetime.now(UTC),
                )
            }
            if len(fresh) < len(ids):
                keep = [i for i, event_id in enumerate(ids) if event_id in fresh]
                ids = [ids[i] for i in keep]
                things = [things[i] for i in keep]
                seqs = [seqs[i] for i in keep]
            if ids:
                await database.execute(
                    "INSERT INTO bench_effects (event_id, thing_id, seq) "
                    "SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])",
                    ids,
                    things,
                    seqs,
                )
        self.handled += len(ids)
        self.duplicates += len(batch) - len(ids)


def _header(headers: dict[str, Any], name: str) -> str:
    value = headers.get(HEADER_PREFIX + name)
    if isinstance(value, bytes):
        return value.decode()
    if not isinstance(value, str):
        raise ValueError(f"missing CloudEvents attribute {name}")
    return value


def _decode(message: Any) -> ThingUpdatedIntegrationEvent:
    headers = message.headers or {}
    if _header(headers, "specversion") != "1.0":
        raise ValueError("not a CloudEvents 1.0 message")
    if _header(headers, "type") != EVENT_TYPE or _header(headers, "dataversion") != "1":
        raise ValueError("unexpected event type or version")
    if message.content_type != "application/json":
        raise ValueError("not JSON")
    payload = json.loads(message.body)
    payload["event_id"] = _header(headers, "id")
    payload["occurred_at"] = _header(headers, "time")
    return ThingUpdatedIntegrationEvent.model_validate(payload)


class AckCounter(Transport):
    """Wraps the consumer's transport: notes when it connected and when ``count`` acks
    were made (the consumer acknowledges only after commit)."""

    def __init__(self, inner: Transport, count: int) -> None:
        super().__init__(inner.url)
        self.inner = inner
        self.count = count
        self.acked = 0
        self.connected_at: float | None = None
        self.done = asyncio.Event()
        self.on_acked: Any = None  # called with (deliveries, time.monotonic())

    async def connect(self) -> None:
        await self.inner.connect()
        if self.connected_at is None:
            self.connected_at = time.perf_counter()

    async def close(self) -> None:
        await self.inner.close()

    async def publish_batch(self, source: str, events: Sequence[CloudEvent]) -> frozenset[int]:
        return await self.inner.publish_batch(source, events)

    async def declare_subscription(self, group: str, event_types: Collection[str]) -> None:
        await self.inner.declare_subscription(group, event_types)

    async def delete_subscription(self, group: str) -> None:
        await self.inner.delete_subscription(group)

    async def subscribe(self, group: str, event_types: Collection[str]) -> Any:
        async for delivery in self.inner.subscribe(group, event_types):
            # Acks come back through this wrapper, which hands them on.
            delivery._transport = self
            yield delivery

    async def subscribe_batches(
        self, group: str, event_types: Collection[str], max_batch: int
    ) -> Any:
        async for batch in self.inner.subscribe_batches(group, event_types, max_batch):
            for delivery in batch:
                delivery._transport = self
            yield batch

    async def ack(self, delivery: Delivery) -> None:
        await self.inner.ack(delivery)
        self._acked([delivery])

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        await self.inner.ack_many(deliveries)
        self._acked(deliveries)

    async def nack(self, delivery: Delivery, *, requeue: bool = True) -> None:
        await self.inner.nack(delivery, requeue=requeue)

    def _acked(self, deliveries: Sequence[Delivery]) -> None:
        self.acked += len(deliveries)
        if self.on_acked is not None:
            self.on_acked(deliveries, time.monotonic())
        if self.acked >= self.count:
            self.done.set()
