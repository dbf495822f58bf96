"""Batch handlers: ``handle_batch`` gets each run of consecutive events of its type.

A handler that defines ``handle_batch`` next to ``handle`` lets one micro-batch's
events be written with one statement. The consumer keeps the guarantees: runs follow
delivery order and never mix types, duplicates are left out, and when a batch fails
its events go through ``handle`` one by one so the failure belongs to one event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from tests.support.consumer_app import (
    PRODUCT_RENAMED,
    ProductPriceChangedIntegrationEvent,
    ProductRenamedIntegrationEvent,
)
from tests.support.consumer_infra import price_changed, structured
from tidings import BoundedContext, IntegrationEventHandler
from tidings.consumer import Consumer
from tidings.contracts.cloudevents import CloudEvent
from tidings.domain import uuid7
from tidings.transports.base import Delivery
from tidings.transports.memory import MemoryTransport


class RecordPrices(IntegrationEventHandler):
    def __init__(self, failing_product: str | None = None) -> None:
        self.batches: list[list[int]] = []
        self.singles: list[int] = []
        self.failing_product = failing_product

    async def handle(self, event: ProductPriceChangedIntegrationEvent) -> None:
        self._check(event)
        self.singles.append(event.seq)

    async def handle_batch(self, events: Sequence[ProductPriceChangedIntegrationEvent]) -> None:
        for event in events:
            self._check(event)
        self.batches.append([event.seq for event in events])

    def _check(self, event: ProductPriceChangedIntegrationEvent) -> None:
        if event.product_id == self.failing_product:
            raise ValueError(f"{event.product_id} is not for sale")


class RecordRenames(IntegrationEventHandler):
    def __init__(self) -> None:
        self.names: list[str] = []

    def handle(self, event: ProductRenamedIntegrationEvent) -> None:
        self.names.append(event.name)


@pytest.fixture
async def context(tmp_path: Path) -> AsyncIterator[BoundedContext]:
    context = BoundedContext("basket", database_url=f"sqlite:///{tmp_path / 'basket.db'}")
    context.create_tables()
    try:
        yield context
    finally:
        await context.adispose()


def renamed(name: str) -> CloudEvent:
    return CloudEvent(
        id=str(uuid7()),
        source="catalog",
        type=PRODUCT_RENAMED,
        dataversion=2,
        subject="product-1",
        data_json=f'{{"product_id":"product-1","name":"{name}","locale":"en"}}'.encode(),
    )


def deliveries(*events: CloudEvent) -> list[Delivery]:
    return [Delivery(structured(event)) for event in events]


def consumer_of(context: BoundedContext, *handlers: object, **options: object) -> Consumer:
    for handler in handlers:
        context.subscribe(handler)
    return Consumer(context, MemoryTransport("memory://unused"), **options)  # type: ignore[arg-type]


async def test_each_run_of_one_type_is_one_call_in_delivery_order(
    context: BoundedContext,
) -> None:
    prices, renames = RecordPrices(), RecordRenames()
    consumer = consumer_of(context, prices, renames)

    await consumer.process(
        deliveries(
            price_changed("product-1", 1),
            price_changed("product-2", 2),
            renamed("Desk lamp"),
            price_changed("product-1", 3),
        )
    )

    assert prices.batches == [[1, 2], [3]]
    assert prices.singles == []
    assert renames.names == ["Desk lamp"]
    assert consumer.stats.handled == 4


async def test_events_already_in_the_inbox_are_left_out_of_the_batch(
    context: BoundedContext,
) -> None:
    prices = RecordPrices()
    consumer = consumer_of(context, prices)
    seen = price_changed("product-1", 1)
    await consumer.process(deliveries(seen))

    await consumer.process(deliveries(seen, price_changed("product-2", 2), seen))

    assert prices.batches == [[1], [2]]
    assert (consumer.stats.handled, consumer.stats.duplicates) == (2, 2)


async def test_a_failing_batch_is_handled_again_event_by_event_through_handle(
    context: BoundedContext,
) -> None:
    prices = RecordPrices(failing_product="product-9")
    consumer = consumer_of(context, prices, immediate_retries=0, max_attempts=1)

    await consumer.process(deliveries(price_changed("product-1", 1), price_changed("product-9", 9)))

    assert prices.batches == []  # the batch rolled back
    assert prices.singles == [1]
    assert consumer.stats.handled == 1
    assert consumer.stats.dead_lettered == 1
    [letter] = await consumer.dead_letters.list()
    assert letter.error_message is not None
    assert "product-9 is not for sale" in letter.error_message
