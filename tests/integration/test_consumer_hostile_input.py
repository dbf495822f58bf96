"""Bad input never crashes a running consumer (DESIGN.md guarantee 6), through a broker.

2,000 hypothesis-generated hostile messages, published raw, interleaved with 2,000 good
events: the consumer stays up, dead-letters every hostile one with its reason and handles
every good one once. The bulk runs on the in-memory broker with SQLite; a smaller run on
RabbitMQ with PostgreSQL adds binary-mode headers full of garbage, which only a broker
carrying headers can deliver.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.support import consumer_app
from tests.support.consumer_hostile import (
    MAX_BYTES,
    Hostile,
    any_hostile,
    generate,
    structured_hostile,
)
from tests.support.consumer_infra import (
    dead_letter_reasons,
    declare,
    effect_counts,
    new_tag,
    postgres_database,
    price_changed,
    publish_raw_memory,
    publish_raw_pubsub,
    publish_raw_rabbitmq,
    pubsub_url,
    rabbitmq_url,
    remove_rabbitmq,
    running,
    wait_until,
)
from tests.support.pubsub_admin import remove_topic
from tidings.consumer import Consumer
from tidings.transports import open_transport
from tidings.transports.memory import MemoryTransport


async def test_two_thousand_hostile_messages_among_two_thousand_good_ones_on_memory_and_sqlite(
    tmp_path: Path,
) -> None:
    tag = new_tag()
    url = f"memory://consumer-{tag}"
    basket = consumer_app.build_basket(f"sqlite:///{tmp_path / 'basket.db'}", url)
    hostile = generate(structured_hostile, 2000, seed=2)
    consumer = Consumer(basket, max_message_bytes=MAX_BYTES)
    try:
        await declare(consumer)
        async with open_transport(url) as producer, running(consumer) as tasks:
            for i, bad in enumerate(hostile):
                await producer.publish_batch("catalog", [price_changed(f"product-{i % 20}", i)])
                publish_raw_memory(url, consumer.group, bad.body, key=f"product-{i % 20}")
            await wait_until(
                lambda: consumer.stats.handled + consumer.stats.dead_lettered >= 4000,
                timeout=120,
                what="4000 messages",
            )
            assert not tasks[0].done()

        assert dead_letter_reasons(basket.engine) == Counter(bad.reason for bad in hostile)
        assert effect_counts(basket.engine) == (2000, 2000)
        assert (consumer.stats.handled, consumer.stats.dead_lettered) == (2000, 2000)
    finally:
        await basket.adispose()
        MemoryTransport.discard_broker(url)


@pytest.mark.postgres
async def test_hostile_messages_with_garbage_headers_on_rabbitmq_and_postgres() -> None:
    tag = new_tag()
    name = f"basket_{tag}"
    url = rabbitmq_url(tag)
    hostile = generate(any_hostile, 300, seed=3)
    with postgres_database(tag) as database_url:
        basket = consumer_app.build_basket(database_url, url, name)
        consumer = Consumer(basket, max_message_bytes=MAX_BYTES)
        try:
            await declare(consumer)
            async with open_transport(url) as producer, running(consumer) as tasks:
                for start in range(0, 300, 50):
                    good = [price_changed(f"product-{i % 20}", i) for i in range(start, start + 50)]
                    await producer.publish_batch("catalog", good)
                    raw = [(bad.body, bad.headers) for bad in hostile[start : start + 50]]
                    await publish_raw_rabbitmq(tag, raw, consumer_app.PRICE_CHANGED)
                await wait_until(
                    lambda: consumer.stats.handled + consumer.stats.dead_lettered >= 600,
                    what="600 messages",
                )
                assert not tasks[0].done()

            expected = Counter(bad.reason for bad in hostile)
            assert dead_letter_reasons(basket.engine) == expected
            assert effect_counts(basket.engine) == (300, 300)
            assert any(bad.headers for bad in hostile)
        finally:
            await basket.adispose()
            await remove_rabbitmq(tag, [name])


def as_pubsub_attributes(bad: Hostile) -> dict[str, str] | None:
    """The hostile message's headers as Pub/Sub attributes (``ce-`` prefix), or None when
    Pub/Sub cannot carry them: attributes are UTF-8 strings, and the ``ce-type`` attribute
    routes a message to the group (its subscription filters on it), as the routing key
    does on RabbitMQ."""
    if not bad.headers:  # structured mode
        return {"ce-type": consumer_app.PRICE_CHANGED}
    attributes = {}
    for name, value in bad.headers.items():
        if not isinstance(value, str):
            return None
        attributes[name.replace("cloudEvents:", "ce-", 1)] = value
    return attributes if attributes.get("ce-type") == consumer_app.PRICE_CHANGED else None


@pytest.mark.postgres
async def test_hostile_messages_with_garbage_attributes_on_pubsub_and_postgres() -> None:
    tag = new_tag()
    name = f"basket_{tag}"
    url = pubsub_url(tag)
    drawn = generate(any_hostile, 400, seed=4)
    hostile = [(bad, a) for bad in drawn if (a := as_pubsub_attributes(bad)) is not None][:300]
    with postgres_database(tag) as database_url:
        basket = consumer_app.build_basket(database_url, url, name)
        consumer = Consumer(basket, max_message_bytes=MAX_BYTES)
        try:
            await declare(consumer)
            async with open_transport(url) as producer, running(consumer) as tasks:
                for start in range(0, len(hostile), 50):
                    good = [price_changed(f"product-{i % 20}", i) for i in range(start, start + 50)]
                    await producer.publish_batch("catalog", good)
                    raw = [(bad.body, a) for bad, a in hostile[start : start + 50]]
                    await publish_raw_pubsub(url, raw)
                total = 2 * len(hostile)
                await wait_until(
                    lambda: consumer.stats.handled + consumer.stats.dead_lettered >= total,
                    what=f"{total} messages",
                )
                assert not tasks[0].done()

            expected = Counter(bad.reason for bad, _ in hostile)
            assert dead_letter_reasons(basket.engine) == expected
            assert effect_counts(basket.engine) == (len(hostile), len(hostile))
            assert any(bad.headers for bad, _ in hostile)
        finally:
            await basket.adispose()
            await remove_topic(url)
