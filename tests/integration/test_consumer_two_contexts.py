"""Two bounded contexts end to end, each with its own database, through a real broker.

Catalog changes prices (use case → domain event → handler publishing the integration
event to its outbox), its relay forwards the outbox, and basket's consumer updates the
basket items. Basket's handler publishes its own integration event: the flow's
correlation id carries on and the causation id names the catalog event that caused it.
Run on RabbitMQ with two PostgreSQL databases, and on the embedded SQLite broker with
two SQLite files.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from tests.support import consumer_app
from tests.support.consumer_infra import (
    declare,
    new_tag,
    postgres_database,
    rabbitmq_url,
    remove_rabbitmq,
    running,
    wait_until,
)
from tidings import BoundedContext, IntegrationEventHandler, RetryPolicy
from tidings.consumer import Consumer
from tidings.outbox import Relay
from tidings.persistence.tables import outbox

items = consumer_app.basket_items


@dataclass
class Stack:
    catalog_database: str
    basket_database: str
    broker_url: str
    basket_name: str


@pytest.fixture(params=["rabbitmq+postgres", "sqlite-broker+sqlite"])
async def stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    tag = new_tag()
    name = f"basket_{tag}"
    if request.param == "sqlite-broker+sqlite":
        yield Stack(
            f"sqlite:///{tmp_path / 'catalog.db'}",
            f"sqlite:///{tmp_path / 'basket.db'}",
            f"sqlite:///{tmp_path / 'broker.db'}",
            name,
        )
        return
    with (
        postgres_database(f"{tag}_catalog") as catalog,
        postgres_database(f"{tag}_basket") as basket,
    ):
        try:
            yield Stack(catalog, basket, rabbitmq_url(tag), name)
        finally:
            await remove_rabbitmq(tag, [name])


class FailOnceForProduct(IntegrationEventHandler):
    """A second handler of the same event, failing its first call for one product: that
    event is rolled back and handled again on its own (the consumer's retry path)."""

    def __init__(self, product_id: str) -> None:
        self.product_id = product_id
        self.failed = False

    def handle(self, event: consumer_app.ProductPriceChangedIntegrationEvent) -> None:
        if event.product_id == self.product_id and not self.failed:
            self.failed = True
            raise ConnectionError("a flaky dependency")


def _outbox_rows(context: BoundedContext) -> list[dict[str, object]]:
    query = select(outbox).order_by(outbox.c.position)
    with context.engine.connect() as connection:
        return [dict(row) for row in connection.execute(query).mappings()]


async def test_a_price_change_in_catalog_updates_baskets_and_basket_events_continue_the_flow(
    stack: Stack,
) -> None:
    catalog = consumer_app.build_catalog(stack.catalog_database, stack.broker_url)
    basket = consumer_app.build_basket(
        stack.basket_database, stack.broker_url, stack.basket_name, handler="update"
    )
    flaky = basket.subscribe(FailOnceForProduct("product-2"))
    with basket.engine.begin() as connection:
        connection.execute(
            insert(items),
            [
                {"basket_id": "basket-1", "product_id": "product-1", "price": "10", "updates": 0},
                {"basket_id": "basket-2", "product_id": "product-1", "price": "10", "updates": 0},
                {"basket_id": "basket-3", "product_id": "product-2", "price": "3", "updates": 0},
            ],
        )
    consumer = Consumer(basket, retry=RetryPolicy(initial_delay=0.01, max_delay=0.1))
    try:
        await declare(consumer)
        change_price = consumer_app.ChangeProductPrice(catalog)
        for product_id, price in [
            ("product-1", "12.50"),
            ("product-2", "3.10"),
            ("product-1", "11"),
        ]:
            with catalog.transaction():
                change_price.execute(product_id, Decimal(price))
        published = _outbox_rows(catalog)  # the relay deletes them once sent
        assert len(published) == 3
        assert len({row["correlation_id"] for row in published}) == 3  # three use cases

        assert await Relay(catalog).drain() == 3
        async with running(consumer):
            await wait_until(lambda: consumer.stats.handled == 3, what="three price changes")

        with basket.engine.connect() as connection:
            rows = connection.execute(
                select(items.c.basket_id, items.c.price, items.c.updates).order_by(
                    items.c.basket_id
                )
            ).all()
        assert [tuple(row) for row in rows] == [
            ("basket-1", "11", 2),
            ("basket-2", "11", 2),
            ("basket-3", "3.10", 1),
        ]
        assert flaky.failed  # product-2 went through the retry path

        # basket's own integration events: one per updated item, each continuing its flow
        caused = {str(row["event_id"]): row for row in published}
        basket_events = _outbox_rows(basket)
        assert [row["event_type"] for row in basket_events] == [consumer_app.ITEM_PRICE_UPDATED] * 5
        for row in basket_events:
            cause = caused[str(row["causation_id"])]
            assert row["correlation_id"] == cause["correlation_id"]
            assert row["source"] == stack.basket_name
            assert (
                json.loads(str(row["payload"]))["product_id"]
                == (json.loads(str(cause["payload"]))["product_id"])
            )
        assert len({row["causation_id"] for row in basket_events}) == 3
        assert consumer.stats.dead_lettered == 0
    finally:
        await catalog.adispose()
        await basket.adispose()
