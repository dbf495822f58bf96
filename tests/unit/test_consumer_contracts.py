"""Contract evolution on the consumer side: a tolerant reader and upcasters.

A producer may add fields to a contract without breaking its consumers (unknown fields
are ignored), and a handler written against version 2 still reads version 1 messages
through an upcaster the consuming context registers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.support import consumer_app
from tests.support.consumer_infra import (
    basket_on_memory_broker,
    declare,
    effects_by_product,
    price_changed,
    running,
    wait_until,
)
from tidings import BoundedContext, CloudEvent
from tidings.consumer import Consumer
from tidings.transports import open_transport


@pytest.fixture
async def basket(tmp_path: Path) -> AsyncIterator[BoundedContext]:
    async with basket_on_memory_broker(tmp_path, "consumer") as context:
        yield context


def _renamed(version: int, data: dict[str, object]) -> CloudEvent:
    return price_changed(
        "product-1",
        0,
        type=consumer_app.PRODUCT_RENAMED,
        dataversion=version,
        data_json=json.dumps(data).encode(),
    )


async def test_fields_the_contract_does_not_know_are_ignored(basket: BoundedContext) -> None:
    consumer = Consumer(basket)
    await declare(consumer)
    newer = price_changed(
        "product-1",
        4,
        data_json=json.dumps(
            {
                "product_id": "product-1",
                "price": "9.99",
                "seq": 4,
                "currency": "EUR",
                "discount": {"percent": 10, "until": "2026-02-01"},
            }
        ).encode(),
    )

    async with open_transport(basket.broker_url) as producer, running(consumer):
        await producer.publish_batch("catalog", [newer])
        await wait_until(lambda: consumer.stats.handled == 1, what="the event handled")

    assert effects_by_product(basket.engine) == {"product-1": [4]}
    assert consumer.stats.dead_lettered == 0


async def test_a_handler_written_against_v2_reads_v1_messages_through_an_upcaster(
    basket: BoundedContext,
) -> None:
    basket.subscribe(consumer_app.RecordRename(basket))
    basket.add_upcaster(consumer_app.PRODUCT_RENAMED, 1, consumer_app.rename_v1_to_v2)
    consumer = Consumer(basket)
    await declare(consumer)
    v1 = _renamed(1, {"product_id": "product-1", "title": "Teapot"})
    v2 = _renamed(2, {"product_id": "product-2", "name": "Kettle", "locale": "fr"})

    async with open_transport(basket.broker_url) as producer, running(consumer):
        await producer.publish_batch("catalog", [v1, v2])
        await wait_until(lambda: consumer.stats.handled == 2, what="both renames handled")

    renames = consumer_app.renames
    with basket.engine.connect() as connection:
        rows = connection.execute(
            select(renames.c.product_id, renames.c.name, renames.c.locale).order_by(renames.c.id)
        ).all()
    assert [tuple(row) for row in rows] == [
        ("product-1", "Teapot", "en"),
        ("product-2", "Kettle", "fr"),
    ]
    assert consumer.stats.dead_lettered == 0


async def test_a_version_without_upcaster_or_contract_is_dead_lettered_as_unknown(
    basket: BoundedContext,
) -> None:
    basket.subscribe(consumer_app.RecordRename(basket))
    consumer = Consumer(basket)
    await declare(consumer)
    v1 = _renamed(1, {"product_id": "product-1", "title": "Teapot"})

    async with open_transport(basket.broker_url) as producer, running(consumer):
        await producer.publish_batch("catalog", [v1])
        await wait_until(lambda: consumer.stats.dead_lettered == 1, what="a dead letter")

    [letter] = await consumer.dead_letters.list()
    assert (letter.reason, letter.event_type, letter.event_version) == (
        "unknown_type",
        consumer_app.PRODUCT_RENAMED,
        1,
    )
