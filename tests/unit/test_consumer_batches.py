"""Micro-batches: one transaction for many events, one by one when the batch fails.

Handed straight to ``Consumer.process`` (no broker): a failing event makes its batch
roll back, the others are handled alone, and the counters and attempts stay exact.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import consumer_app
from tests.support.consumer_infra import effects_by_product, price_changed, structured
from tidings import BoundedContext
from tidings.consumer import Consumer
from tidings.transports.base import Delivery
from tidings.transports.memory import MemoryTransport

calls: Counter[str] = Counter()


def _fail_for_product_9(event: consumer_app.ProductPriceChangedIntegrationEvent) -> None:
    calls[event.product_id] += 1
    if event.product_id == "product-9":
        raise ValueError("product-9 is not for sale")


@pytest.fixture
async def basket(tmp_path: Path) -> AsyncIterator[BoundedContext]:
    calls.clear()
    context = consumer_app.build_basket(
        f"sqlite:///{tmp_path / 'basket.db'}", "memory://unused", before=_fail_for_product_9
    )
    try:
        yield context
    finally:
        await context.adispose()


def _consumer(context: BoundedContext, **options: Any) -> Consumer:
    return Consumer(context, MemoryTransport("memory://unused"), **options)


async def test_a_batch_with_one_failing_event_commits_the_others_and_dead_letters_that_one(
    basket: BoundedContext,
) -> None:
    consumer = _consumer(basket, immediate_retries=2, max_attempts=3)
    events = [price_changed(f"product-{i}", i) for i in range(10)]

    await consumer.process([Delivery(structured(event)) for event in events])

    assert effects_by_product(basket.engine) == {f"product-{i}": [i] for i in range(9)}
    assert consumer.stats.handled == 9
    assert consumer.stats.dead_lettered == 1
    # the handler ran exactly max_attempts times for it, its failed batch attempt included
    assert calls["product-9"] == 3
    [letter] = await consumer.dead_letters.list()
    assert letter.attempts == 3


async def test_duplicates_in_a_failed_batch_are_counted_once(basket: BoundedContext) -> None:
    consumer = _consumer(basket, immediate_retries=0, max_attempts=1)
    seen = price_changed("product-1", 1)
    await consumer.process([Delivery(structured(seen))])

    await consumer.process(
        [Delivery(structured(seen)), Delivery(structured(price_changed("product-9", 9)))]
    )

    assert (consumer.stats.handled, consumer.stats.duplicates) == (1, 1)
    assert consumer.stats.dead_lettered == 1
    assert calls["product-1"] == 1
