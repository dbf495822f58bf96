"""A consumer drops nothing silently (README guarantee 6, issue 12), on real brokers.

Where the broker routes by type (RabbitMQ bindings, NATS subjects, Pub/Sub subscription
filters), a delivered message
of a type the group does not handle is a misrouting: dead-lettered as ``unknown_type``.
Where consumers read a shared log (SQLite file, Redis stream, Kafka topic), other
contexts' types are skipped by their routing metadata and counted; a message whose
routing metadata and CloudEvent disagree is dead-lettered as ``routing_mismatch``.
And where the broker would drop an event no subscription takes, the relay keeps it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.services import require
from tests.support import consumer_app, relay_app, relay_brokers, startup_app
from tests.support.consumer_app import PRICE_CHANGED
from tests.support.consumer_infra import (
    dead_letter_reasons,
    declare,
    effect_counts,
    new_tag,
    price_changed,
    rabbitmq_url,
    remove_rabbitmq,
    running,
    structured,
    wait_until,
)
from tests.support.relay_processes import environment, tidings_json
from tidings import BoundedContext
from tidings.consumer import Consumer
from tidings.contracts.cloudevents import encode_binary
from tidings.outbox.relay import Relay
from tidings.outbox.store import OutboxStore
from tidings.transports import open_transport
from tidings.transports.memory import MemoryTransport

FOREIGN = "billing.invoice.sent"  # another context's type, not handled by the basket


@pytest.fixture
async def basket(tmp_path: Path) -> AsyncIterator[BoundedContext]:
    context = consumer_app.build_basket(f"sqlite:///{tmp_path / 'basket.db'}", "memory://unused")
    try:
        yield context
    finally:
        await context.adispose()


async def _consume_until(consumer: Consumer, handled: int, dead: int) -> None:
    async with running(consumer):
        await wait_until(
            lambda: consumer.stats.handled >= handled and consumer.stats.dead_lettered >= dead,
            timeout=30,
            what=f"{handled} handled and {dead} dead-lettered",
        )


# -- brokers that route by type -----------------------------------------------------------
async def test_rabbitmq_a_misrouted_type_is_dead_lettered_as_unknown_type(
    basket: BoundedContext,
) -> None:
    import aio_pika

    tag = new_tag()
    url = rabbitmq_url(tag)
    consumer = Consumer(basket, open_transport(url))
    queue = f"tidings.{consumer.group}"
    try:
        await declare(consumer)
        connection = await aio_pika.connect(require("rabbitmq"), timeout=5)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(f"consumertest.{tag}")
            # A stale binding routes another context's type to the basket's queue.
            await (await channel.get_queue(queue)).bind(exchange, routing_key=FOREIGN)
            foreign = price_changed("product-1", 1, type=FOREIGN)
            # Straight into the queue (default exchange), and through the stale binding.
            await channel.default_exchange.publish(
                aio_pika.Message(structured(foreign)), routing_key=queue
            )
            async with open_transport(url) as producer:
                await producer.publish_batch("billing", [price_changed("p", 2, type=FOREIGN)])
                await producer.publish_batch("catalog", [price_changed("product-1", 3)])
                # Routed as the foreign type, but the CloudEvent says the handled one.
                await exchange.publish(
                    aio_pika.Message(structured(price_changed("product-1", 4))),
                    routing_key=FOREIGN,
                )
        await _consume_until(consumer, handled=1, dead=3)

        assert dead_letter_reasons(basket.engine) == {"unknown_type": 2, "routing_mismatch": 1}
        assert effect_counts(basket.engine) == (1, 1)
        assert consumer.stats.ignored == 0
    finally:
        await remove_rabbitmq(tag, [consumer.group])


async def test_nats_a_foreign_type_published_into_the_groups_subject_is_dead_lettered(
    basket: BoundedContext,
) -> None:
    import nats

    tag = new_tag()
    url = f"{require('nats')}?stream=NOTHINGDROPPED_{tag}&subject_prefix=nd{tag}"
    consumer = Consumer(basket, open_transport(url))
    client = await nats.connect(require("nats"), connect_timeout=5)
    try:
        await declare(consumer)
        headers, body = encode_binary(price_changed("product-1", 1, type=FOREIGN), prefix="ce-")
        await client.jetstream().publish(f"nd{tag}.catalog.{PRICE_CHANGED}", body, headers=headers)
        async with open_transport(url) as producer:
            await producer.publish_batch("catalog", [price_changed("product-1", 2)])
        await _consume_until(consumer, handled=1, dead=1)

        assert dead_letter_reasons(basket.engine) == {"unknown_type": 1}
        [letter] = await consumer.dead_letters.list()
        assert letter.event_type == FOREIGN
        assert effect_counts(basket.engine) == (1, 1)
    finally:
        await consumer.transport.close()
        await client.jetstream().delete_stream(f"NOTHINGDROPPED_{tag}")
        await client.close()


async def test_pubsub_a_type_a_stale_filter_admits_and_a_mismatch_are_dead_lettered(
    basket: BoundedContext, tmp_path: Path
) -> None:
    import grpc
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.publisher.transports.grpc import PublisherGrpcTransport

    from tidings.transports.pubsub import PubSubTransport

    tag = new_tag()
    url = relay_brokers.broker_url("pubsub", tag, tmp_path)
    consumer = Consumer(basket, open_transport(url))
    transport = consumer.transport
    assert isinstance(transport, PubSubTransport) and transport.routes_by_type
    try:
        await transport.connect()
        # The subscription's filter was made when the group also handled FOREIGN: a
        # filter cannot change, so it still admits that type.
        await transport.declare_subscription(consumer.group, {PRICE_CHANGED, FOREIGN})
        async with open_transport(url) as producer:
            await producer.publish_batch("billing", [price_changed("p", 2, type=FOREIGN)])
            await producer.publish_batch("catalog", [price_changed("product-1", 3)])

        def publish_mismatch() -> None:
            # Filtered in as FOREIGN, but the CloudEvent says the handled type.
            channel = grpc.insecure_channel(transport._emulator)
            client = pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=channel))
            body = structured(price_changed("product-1", 4))
            client.publish(transport.topic_path, body, **{"ce-type": FOREIGN}).result(10)

        await asyncio.to_thread(publish_mismatch)
        await _consume_until(consumer, handled=1, dead=2)

        assert dead_letter_reasons(basket.engine) == {"unknown_type": 1, "routing_mismatch": 1}
        assert effect_counts(basket.engine) == (1, 1)
    finally:
        await transport.close()
        await relay_brokers.remove("pubsub", tag, [consumer.group])


# -- shared logs ----------------------------------------------------------------------------
def _put_disagreeing(kind: str, url: str) -> object:
    """Publish, bypassing the encoder, a message routed as the basket's type whose
    CloudEvent says another type; returns what to await (or None)."""
    body = structured(price_changed("product-1", 99, type=FOREIGN))
    if kind == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            db.execute(
                "INSERT INTO tidings_broker_log "
                "(partition_no, source, type, partition_key, body, created_at) "
                "VALUES (0, 'forger', ?, 'product-1', ?, ?)",
                (PRICE_CHANGED, body, time.time()),
            )
        return None
    if kind == "redis":
        from redis.asyncio import Redis

        async def put() -> None:
            client = Redis.from_url(require("redis"))
            try:
                stream = url.split("stream=", 1)[1]
                fields = {"type": PRICE_CHANGED, "source": "forger", "key": "product-1"}
                await client.xadd(stream, {**fields, "id": "forged", "body": body})
            finally:
                await client.aclose()

        return put()
    from aiokafka import AIOKafkaProducer

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=require("kafka").split("//", 1)[1])
        await producer.start()
        try:
            topic = url.split("topic=", 1)[1].split("&", 1)[0]
            # Structured mode; the ce_type header is the routing metadata.
            headers = [("ce_type", PRICE_CHANGED.encode())]
            await producer.send_and_wait(topic, body, key=b"product-1", headers=headers)
        finally:
            await producer.stop()

    return send()


@pytest.mark.parametrize("kind", ["sqlite", "redis", "kafka"])
async def test_a_shared_log_skips_other_types_and_dead_letters_a_disagreeing_message(
    kind: str, basket: BoundedContext, tmp_path: Path
) -> None:
    tag = new_tag()
    url = relay_brokers.broker_url(kind, tag, tmp_path)
    consumer = Consumer(basket, open_transport(url))
    try:
        await declare(consumer)
        async with open_transport(url) as producer:
            foreign = [price_changed(f"p-{i}", i, type=FOREIGN) for i in range(5)]
            await producer.publish_batch("billing", foreign)
            put = _put_disagreeing(kind, url)
            if put is not None:
                await put  # type: ignore[misc]
            await producer.publish_batch("catalog", [price_changed("product-2", 1)])
        await _consume_until(consumer, handled=1, dead=1)
        await wait_until(lambda: consumer.stats.skipped >= 5, timeout=10, what="5 skipped")

        assert consumer.stats.skipped == 5
        assert dead_letter_reasons(basket.engine) == {"routing_mismatch": 1}
        [letter] = await consumer.dead_letters.list()
        assert letter.event_type == FOREIGN
        assert effect_counts(basket.engine) == (1, 1)
    finally:
        await consumer.transport.close()
        await relay_brokers.remove(kind, tag, [consumer.group])


# -- unroutable publishes ----------------------------------------------------------------
@pytest.mark.parametrize("kind", ["rabbitmq", "nats", "pubsub", "memory"])
async def test_events_no_subscription_takes_are_archived_as_unrouted_and_replayed_later(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The relay's side: with no grace, an event no subscription takes is never counted
    as sent; it is archived as unrouted (with the default retention) and a warning,
    and ``tidings outbox replay --unrouted`` sends it once a subscriber is declared."""
    tag = new_tag()
    url = relay_brokers.broker_url(kind, tag, tmp_path)
    outbox_url = f"sqlite:///{tmp_path / 'producer.db'}"
    consumer_url = f"sqlite:///{tmp_path / 'consumer.db'}"
    producer = relay_app.build(outbox_url, url)
    consuming = startup_app.build(consumer_url, url)
    consumer = Consumer(consuming)
    env = environment(
        outbox_url, url, **{startup_app.DATABASE_ENV: consumer_url, startup_app.BROKER_ENV: url}
    )
    try:
        relay_app.publish_ticks(producer, 0, 200)
        relay = Relay(producer, unrouted_grace=0)
        await relay.drain()

        assert (relay.stats.published, relay.stats.unroutable) == (200, 200)
        assert "archived as unrouted" in caplog.text
        if kind == "memory":
            return  # one process: the CLI below would see another memory broker
        status = tidings_json("outbox", "status", "tests.support.relay_app:context", env=env)
        assert (status["pending"], status["unrouted"]) == (0, 200)

        declared = tidings_json("declare", "tests.support.startup_app:context", env=env)
        assert declared["declared"][0]["event_types"] == [relay_app.EVENT_TYPE]
        args = ("outbox", "replay", "tests.support.relay_app:context", "--unrouted")
        assert tidings_json(*args, env=env)["replayed"] == 200
        assert tidings_json(*args, env=env)["replayed"] == 0  # the mark is gone
        async with running(consumer):
            await wait_until(lambda: consumer.stats.handled >= 200, timeout=30, what="200")
        assert startup_app.handled(consuming.engine) == (200, 200)
    finally:
        await producer.adispose()
        await consuming.adispose()
        if kind == "memory":
            MemoryTransport.discard_broker(url)
        else:
            await relay_brokers.remove(kind, tag, [startup_app.NAME])


@pytest.mark.parametrize("kind", ["rabbitmq", "pubsub"])
async def test_a_relay_holds_an_unroutable_event_until_its_subscriber_is_declared(
    kind: str, tmp_path: Path
) -> None:
    """Within the grace the relay keeps the outbox where it is: the events stay pending
    (in order) and reach the subscription once it exists, none archived as unrouted."""
    tag = new_tag()
    url = relay_brokers.broker_url(kind, tag, tmp_path)
    producer = relay_app.build(f"sqlite:///{tmp_path / 'producer.db'}", url)
    consuming = startup_app.build(f"sqlite:///{tmp_path / 'consumer.db'}", url)
    consumer = Consumer(consuming)
    relay = Relay(producer, unrouted_grace=60)
    try:
        relay_app.publish_ticks(producer, 0, 50, keys=5)
        task = asyncio.create_task(relay.run())
        await wait_until(lambda: relay.stats.held >= 2, timeout=15, what="the relay holding")
        assert relay.stats.published == 0
        status = await OutboxStore(producer.async_engine).status()
        assert status.pending == 50
        assert "no subscription takes relaytest.meter.ticked yet: held" in str(
            status.stuck[0].last_error
        )
        async with running(consumer):  # declares the subscription first
            await wait_until(lambda: consumer.stats.handled >= 50, timeout=30, what="50")
        await relay.stop()
        await task

        assert relay.stats.unroutable == 0
        assert startup_app.handled(consuming.engine) == (50, 50)
        seqs = startup_app.seqs_in_handling_order(consuming.engine)
        if kind == "rabbitmq":  # one queue: publication order
            assert seqs == list(range(50))
        for key in range(5):  # Pub/Sub orders per key (ordering key)
            assert [seq for seq in seqs if seq % 5 == key] == list(range(key, 50, 5))
    finally:
        await producer.adispose()
        await consuming.adispose()
        await relay_brokers.remove(kind, tag, [startup_app.NAME])


async def test_tidings_run_declares_the_subscription_before_its_relay_sends_anything(
    tmp_path: Path,
) -> None:
    """A context consuming its own events (``tidings run``'s ContextWorker): declared
    first, so the relay never finds its own events unroutable."""
    from tidings.worker import ContextWorker

    url = f"memory://worker-{new_tag()}"
    context = startup_app.build(f"sqlite:///{tmp_path / 'both.db'}", url)
    relay_app.publish_ticks(context, 0, 100)
    worker = ContextWorker(context)
    task = asyncio.create_task(worker.run())
    try:
        assert worker.consumer is not None and worker.relay is not None
        consumer = worker.consumer
        await wait_until(lambda: consumer.stats.handled >= 100, timeout=30, what="100")
    finally:
        await worker.stop()
        await task
        MemoryTransport.discard_broker(url)
    assert (worker.relay.stats.held, worker.relay.stats.unroutable) == (0, 0)
