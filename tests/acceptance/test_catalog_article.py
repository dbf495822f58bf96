"""The main article's catalog example runs as written, sync and asyncio, SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from tests.acceptance import catalog_article, catalog_article_async
from tests.acceptance.catalog_article import (
    Product,
    ProductProjection,
    ProductPutOnSale,
    Recommendation,
)
from tests.conftest import ContextFactory
from tidings import DomainEventHandler
from tidings.persistence.tables import outbox, publication_log

# The articles' scenarios publish integration events from domain event handlers only.
pytestmark = pytest.mark.filterwarnings("error::tidings.PublishedFromUseCaseWarning")


class RememberPublishedEvents(DomainEventHandler):
    """A test spy: the ProductPutOnSale events the use case published."""

    def __init__(self) -> None:
        self.events: list[ProductPutOnSale] = []

    def handle(self, event: ProductPutOnSale) -> None:
        self.events.append(event)


def _assert_one_outbox_row_caused_by(
    rows: Sequence[Any], event: ProductPutOnSale, correlation_id: str
) -> None:
    assert len(rows) == 1
    row = rows[0]
    assert row.event_type == "catalog.product.updated"
    assert row.event_version == 1
    assert row.source == "catalog"
    assert row.partition_key == "lamp-1"
    assert row.correlation_id == correlation_id
    assert row.causation_id == str(event.event_id)
    assert json.loads(row.payload) == {
        "product_id": "lamp-1",
        "name": "Reading lamp",
        "on_sale": True,
        "price": "39.90",
        "stock": 12,
    }


def test_putting_a_product_on_sale_projects_it_recalculates_and_publishes_one_integration_event(
    database_url: str, make_context: ContextFactory
) -> None:
    context = make_context(database_url)
    catalog_article.seed(context)
    put_product_on_sale = catalog_article.wire(context)
    spy = context.subscribe(RememberPublishedEvents())

    with context.transaction(correlation_id="request-42"):
        put_product_on_sale.execute("lamp-1")

    (event,) = spy.events
    assert event.occurred_at.utcoffset() is not None
    with context.engine.connect() as connection:
        _assert_one_outbox_row_caused_by(
            connection.execute(select(outbox)).all(), event, "request-42"
        )
        assert connection.execute(select(publication_log)).all() == []
    with context.transaction() as session:
        assert session.get_one(Product, "lamp-1").on_sale is True
        projection = session.get_one(ProductProjection, "lamp-1")
        assert (projection.name, projection.on_sale) == ("Reading lamp", True)
        assert session.get_one(Recommendation, "lamp-1").recalculations == 1


def test_the_correlation_id_is_generated_when_the_caller_gives_none(
    sqlite_url: str, make_context: ContextFactory
) -> None:
    context = make_context(sqlite_url)
    catalog_article.seed(context)
    put_product_on_sale = catalog_article.wire(context)

    with context.transaction():
        correlation_id = context.correlation_id
        put_product_on_sale.execute("lamp-1")

    with context.engine.connect() as connection:
        (row,) = connection.execute(select(outbox)).all()
    assert row.correlation_id == correlation_id
    assert len(correlation_id) == 36


async def test_the_async_flavour_with_async_handlers_and_queries_gives_the_same_result(
    database_url: str, make_async_context: ContextFactory
) -> None:
    context = make_async_context(database_url)
    await catalog_article_async.seed(context)
    put_product_on_sale = catalog_article_async.wire(context)
    spy = context.subscribe(RememberPublishedEvents())

    async with context.transaction(correlation_id="request-43"):
        await put_product_on_sale.execute("lamp-1")

    (event,) = spy.events
    async with context.async_engine.connect() as connection:
        rows = (await connection.execute(select(outbox))).all()
        _assert_one_outbox_row_caused_by(rows, event, "request-43")
    async with context.transaction() as session:
        assert (await session.get_one(Product, "lamp-1")).on_sale is True
        projection = await session.get_one(ProductProjection, "lamp-1")
        assert projection.on_sale is True
        assert (await session.get_one(Recommendation, "lamp-1")).recalculations == 1


def test_a_failing_reaction_leaves_the_product_not_on_sale_and_the_outbox_empty(
    sqlite_url: str, make_context: ContextFactory
) -> None:
    context = make_context(sqlite_url)
    catalog_article.seed(context)
    put_product_on_sale = catalog_article.wire(context)

    class RecommendationsAreDown(DomainEventHandler):
        def handle(self, event: ProductPutOnSale) -> None:
            raise ConnectionError("recommendations store unreachable")

    context.subscribe(RecommendationsAreDown())

    with pytest.raises(ConnectionError), context.transaction():
        put_product_on_sale.execute("lamp-1")

    assert context.outbox_count() == 0
    with context.transaction() as session:
        assert session.get_one(Product, "lamp-1").on_sale is False
        assert session.get(ProductProjection, "lamp-1") is None


def test_the_integration_event_price_survives_as_an_exact_decimal(
    sqlite_url: str, make_context: ContextFactory
) -> None:
    context = make_context(sqlite_url)
    catalog_article.seed(context)
    put_product_on_sale = catalog_article.wire(context)

    with context.transaction():
        put_product_on_sale.execute("lamp-1")

    with context.engine.connect() as connection:
        (payload,) = connection.execute(select(outbox.c.payload)).scalars().all()
    event = catalog_article.ProductUpdatedIntegrationEvent.model_validate_json(payload)
    assert event.price == Decimal("39.90")
