"""Databases, broker URLs, raw publishing and waiting, for the consumer acceptance tests.

Each test gets databases and a RabbitMQ exchange of its own (named after a random tag),
so tests never see each other's rows or messages, and removes them afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, make_url, select, text
from sqlalchemy.engine import Engine

from tests.services import require
from tests.support import consumer_app
from tests.support.consumer_app import PRICE_CHANGED, price_effects
from tidings import BoundedContext
from tidings.consumer import Consumer
from tidings.contracts.cloudevents import CloudEvent, encode_structured
from tidings.domain.ids import uuid7
from tidings.persistence.tables import dead_letters
from tidings.transports.memory import MemoryTransport
from tidings.transports.memory_broker import Message
from tidings.transports.rabbitmq import QUEUE_PREFIX


def new_tag() -> str:
    return uuid7().hex[-12:]


@contextlib.asynccontextmanager
async def basket_on_memory_broker(folder: Path, name: str) -> AsyncIterator[BoundedContext]:
    """basket on a SQLite file in ``folder`` and a memory broker of its own (``name`` and
    a tag), disposed of and the broker discarded afterwards."""
    url = f"memory://{name}-{new_tag()}"
    context = consumer_app.build_basket(f"sqlite:///{folder / 'basket.db'}", url)
    try:
        yield context
    finally:
        await context.adispose()
        MemoryTransport.discard_broker(url)


# -- PostgreSQL ---------------------------------------------------------------------------
@contextlib.contextmanager
def postgres_database(tag: str) -> Iterator[str]:
    """A fresh PostgreSQL database ``tidings_consumer_<tag>``, dropped afterwards."""
    base = make_url(require("postgres"))
    name = f"tidings_consumer_{tag}"
    admin = create_engine(
        base.set(drivername="postgresql+psycopg", database="postgres"),
        isolation_level="AUTOCOMMIT",
        pool_pre_ping=True,  # a test may restart PostgreSQL meanwhile
    )
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# -- RabbitMQ -----------------------------------------------------------------------------
def rabbitmq_url(tag: str, **options: str) -> str:
    """The RabbitMQ URL with an exchange of the test's own (plus URL ``options``)."""
    query = "&".join([f"exchange=consumertest.{tag}", *(f"{k}={v}" for k, v in options.items())])
    return f"{require('rabbitmq')}?{query}"


async def remove_rabbitmq(tag: str, groups: Collection[str]) -> None:
    """Delete the queues of ``groups`` and the test's exchange (best effort)."""
    import aio_pika

    with contextlib.suppress(Exception):
        connection = await aio_pika.connect(require("rabbitmq"), timeout=5)
        async with connection:
            channel = await connection.channel()
            for group in groups:
                await channel.queue_delete(f"{QUEUE_PREFIX}{group}")
            await channel.exchange_delete(f"consumertest.{tag}")


async def rabbitmq_queue_is_empty(group: str) -> bool:
    """True when ``group``'s queue has no message ready for delivery."""
    import aio_pika

    connection = await aio_pika.connect(require("rabbitmq"), timeout=5)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"{QUEUE_PREFIX}{group}", passive=True)
        await queue.channel.close()
    return not queue.declaration_result.message_count


async def publish_raw_rabbitmq(
    tag: str, messages: Collection[tuple[bytes, Mapping[str, Any]]], routing_key: str
) -> None:
    """Publish bodies with arbitrary AMQP headers as they are, bypassing every encoder.

    A ``content-type`` header goes as the AMQP property, as the transport sends it."""
    import aio_pika

    connection = await aio_pika.connect(require("rabbitmq"), timeout=5)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(
            f"consumertest.{tag}", aio_pika.ExchangeType.TOPIC, durable=True
        )
        for body, headers in messages:
            # AMQP carries raw bytes as a byte array (pamqp encodes bytearray, not bytes)
            table = {
                name: bytearray(value) if isinstance(value, bytes) else value
                for name, value in headers.items()
                if name != "content-type"
            }
            content_type = headers.get("content-type")
            message = aio_pika.Message(body, headers=table, content_type=content_type)
            await exchange.publish(message, routing_key=routing_key)


# -- Pub/Sub (the emulator) ----------------------------------------------------------------
def pubsub_url(tag: str) -> str:
    """The Pub/Sub emulator URL with a topic of the test's own."""
    return f"{require('pubsub')}&topic=consumertest.{tag}"


async def publish_raw_pubsub(
    url: str, messages: Collection[tuple[bytes, Mapping[str, str]]]
) -> None:
    """Publish bodies with the given attributes as they are, bypassing every encoder."""
    import grpc
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.publisher.transports.grpc import PublisherGrpcTransport

    from tidings.transports.pubsub import PubSubTransport

    target = PubSubTransport(url)

    def publish() -> None:
        channel = grpc.insecure_channel(target._emulator)
        publisher = pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=channel))
        futures = [
            publisher.publish(target.topic_path, body, **attributes)
            for body, attributes in messages
        ]
        for future in futures:
            future.result(timeout=30)
        publisher.stop()

    await asyncio.to_thread(publish)


# -- the in-memory broker -----------------------------------------------------------------
def publish_raw_memory(url: str, group: str, body: bytes, *, key: str = "raw") -> None:
    """Put ``body`` as it is in ``group``'s queue of the memory broker named by ``url``.

    The memory transport only publishes CloudEvents it encodes itself; hostile bytes go in
    through its broker directly (typed as the group's event so that it receives them).
    """
    name = url.split("://", 1)[1].strip("/")
    subscription = MemoryTransport._brokers[name].groups[group]
    subscription.append(Message(PRICE_CHANGED, key, body))
    subscription.signal.notify()


# -- events and effects -------------------------------------------------------------------
def price_changed(
    product_id: str, seq: int, *, price: Decimal | None = None, **attributes: Any
) -> CloudEvent:
    """A valid ProductPriceChangedIntegrationEvent v1 as a CloudEvent (key = product)."""
    data = (
        f'{{"product_id":"{product_id}","price":"{price if price is not None else seq}",'
        f'"seq":{seq}}}'
    )
    options: dict[str, Any] = {
        "id": str(uuid7()),
        "source": "catalog",
        "type": PRICE_CHANGED,
        "subject": product_id,
        "time": "2026-01-01T00:00:00Z",
        "data_json": data.encode(),
        **attributes,
    }
    return CloudEvent(**options)


def structured(event: CloudEvent) -> bytes:
    return encode_structured(event)


def effect_counts(engine: Engine) -> tuple[int, int]:
    """(effect rows, distinct event ids among them)."""
    query = select(func.count(), func.count(price_effects.c.event_id.distinct()))
    with engine.connect() as connection:
        rows, distinct = connection.execute(query).one()
    return int(rows), int(distinct)


def effects_by_product(engine: Engine) -> dict[str, list[int]]:
    """Each product's ``seq`` values in the order their effects were written."""
    query = select(price_effects.c.product_id, price_effects.c.seq).order_by(price_effects.c.id)
    result: dict[str, list[int]] = {}
    with engine.connect() as connection:
        for product_id, seq in connection.execute(query):
            result.setdefault(product_id, []).append(seq)
    return result


def dead_letter_reasons(engine: Engine) -> Counter[str]:
    query = select(dead_letters.c.reason, func.count()).group_by(dead_letters.c.reason)
    with engine.connect() as connection:
        return Counter({reason: int(count) for reason, count in connection.execute(query)})


# -- waiting ------------------------------------------------------------------------------
async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], *, timeout: float = 60.0, what: str = ""
) -> None:
    """Poll ``condition`` every 20 ms until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = condition()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or condition}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(*consumers: Consumer) -> AsyncIterator[list[asyncio.Task[None]]]:
    """Run consumers as tasks; stop them (and surface their errors) on exit."""
    tasks = [asyncio.create_task(consumer.run()) for consumer in consumers]
    try:
        yield tasks
        for task in tasks:
            assert not task.done(), f"a consumer stopped by itself: {task!r}"
    finally:
        for consumer in consumers:
            await consumer.stop()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=30)
        for result in results:
            if isinstance(result, BaseException):
                raise result


async def declare(consumer: Consumer) -> None:
    """Declare the consumer's subscription now, so that what is published next is kept."""
    await consumer.transport.connect()
    await consumer.transport.declare_subscription(
        consumer.group, consumer.subscriptions.event_types
    )
