"""The contexts the consumer acceptance tests run, shared with their subprocesses.

Tests and the processes they start (``tidings consume tests.support.consumer_app:context``,
``tidings dlq ... tests.support.consumer_app:context``) import this module, so both sides
agree on the contracts, the effect tables and where the database and the broker are: the
URLs travel in the environment variables below.

Two contexts, as in the articles' catalog/basket scenario:

* **catalog** changes a product's price (a use case), which records the domain event
  ``ProductPriceChanged``; a domain event handler publishes the integration event
  ``ProductPriceChangedIntegrationEvent`` through the outbox.
* **basket** consumes it. :class:`RecordPriceChange` writes one effect row per handled
  event (no unique constraint: a second run would show as a second row);
  :class:`UpdateBasketPricesOnProductPriceChanged` updates the basket items and publishes
  ``BasketItemPriceUpdatedIntegrationEvent`` for each, from the handler.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
    update,
)

from tidings import (
    BoundedContext,
    DomainEvent,
    DomainEventHandler,
    IntegrationEvent,
    IntegrationEventHandler,
    UseCase,
)

DATABASE_ENV = "TIDINGS_CONSUMER_TEST_DATABASE_URL"
BROKER_ENV = "TIDINGS_CONSUMER_TEST_BROKER_URL"
NAME_ENV = "TIDINGS_CONSUMER_TEST_NAME"
#: comma-separated product ids whose price changes the basket handler refuses (raises)
FAILING_ENV = "TIDINGS_CONSUMER_TEST_FAILING_PRODUCTS"

PRICE_CHANGED = "consumertest.product.price_changed"
ITEM_PRICE_UPDATED = "consumertest.basket.item_price_updated"
PRODUCT_RENAMED = "consumertest.product.renamed"


# -- contracts ----------------------------------------------------------------------------
class ProductPriceChangedIntegrationEvent(IntegrationEvent):
    """Catalog's contract: a product has a new price. ``seq`` orders one producer's events."""

    event_type: ClassVar[str] = PRICE_CHANGED
    event_version: ClassVar[int] = 1

    product_id: str
    price: Decimal
    seq: int = 0


class BasketItemPriceUpdatedIntegrationEvent(IntegrationEvent):
    """Basket's contract, published from the handler of the price change."""

    event_type: ClassVar[str] = ITEM_PRICE_UPDATED
    event_version: ClassVar[int] = 1

    basket_id: str
    product_id: str
    price: Decimal


class ProductRenamedIntegrationEvent(IntegrationEvent):
    """Version 2 of a contract whose version 1 said ``title`` (no locale)."""

    event_type: ClassVar[str] = PRODUCT_RENAMED
    event_version: ClassVar[int] = 2

    product_id: str
    name: str
    locale: str


def rename_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """Upcaster: v1 ``{"product_id", "title"}`` → v2 ``{"product_id", "name", "locale"}``."""
    upcast = {key: value for key, value in payload.items() if key != "title"}
    upcast["name"] = payload["title"]
    upcast["locale"] = "en"
    return upcast


# -- tables -------------------------------------------------------------------------------
metadata = MetaData()
# No unique constraint on purpose: a handler running twice for one event shows as two rows.
price_effects = Table(
    "consumertest_price_effects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("product_id", String(200), nullable=False),
    Column("price", String(40), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("handled_at", Float, nullable=False),
)
products = Table(
    "consumertest_products",
    metadata,
    Column("product_id", String(64), primary_key=True),
    Column("price", String(40), nullable=False),
)
basket_items = Table(
    "consumertest_basket_items",
    metadata,
    Column("basket_id", String(64), primary_key=True),
    Column("product_id", String(64), primary_key=True),
    Column("price", String(40), nullable=False),
    Column("updates", Integer, nullable=False, default=0),
)
renames = Table(
    "consumertest_renames",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("product_id", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("locale", String(10), nullable=False),
)


# -- catalog ------------------------------------------------------------------------------
class ProductPriceChanged(DomainEvent):
    product_id: str
    price: Decimal


class ChangeProductPrice(UseCase):
    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def execute(self, product_id: str, price: Decimal) -> None:
        session = self._context.session
        changed = session.execute(
            update(products).where(products.c.product_id == product_id).values(price=str(price))
        )
        if not changed.rowcount:  # type: ignore[attr-defined]
            session.execute(insert(products).values(product_id=product_id, price=str(price)))
        self._context.domain_events.publish(ProductPriceChanged(product_id=product_id, price=price))


class PublishPriceChangedIntegrationEventOnProductPriceChanged(DomainEventHandler):
    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def handle(self, event: ProductPriceChanged) -> None:
        self._context.integration_events.publish(
            ProductPriceChangedIntegrationEvent(product_id=event.product_id, price=event.price)
        )


def build_catalog(database_url: str, broker_url: str, name: str = "catalog") -> BoundedContext:
    context = BoundedContext(name, database_url=database_url, broker_url=broker_url)
    context.create_tables()
    metadata.create_all(context.engine)
    context.subscribe(PublishPriceChangedIntegrationEventOnProductPriceChanged(context))
    return context


# -- basket -------------------------------------------------------------------------------
Hook = Callable[[ProductPriceChangedIntegrationEvent], None]


class RecordPriceChange(IntegrationEventHandler):
    """Writes one effect row per event, in the consumer's transaction.

    ``before`` runs first (tests make it fail, record attempts, ...); product ids listed
    in ``$TIDINGS_CONSUMER_TEST_FAILING_PRODUCTS`` always fail.
    """

    def __init__(self, context: BoundedContext, before: Hook | None = None) -> None:
        self._context = context
        self._before = before
        self._failing = set(filter(None, os.environ.get(FAILING_ENV, "").split(",")))

    def handle(self, event: ProductPriceChangedIntegrationEvent) -> None:
        if self._before is not None:
            self._before(event)
        if event.product_id in self._failing:
            raise RuntimeError(f"price of {event.product_id} refused")
        self._context.session.execute(
            insert(price_effects).values(
                event_id=str(event.event_id),
                product_id=event.product_id,
                price=str(event.price),
                seq=event.seq,
                handled_at=time.time(),
            )
        )


class AsyncRecordPriceChange(IntegrationEventHandler):
    """The asyncio flavour of :class:`RecordPriceChange` (``ctx.async_session``)."""

    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    async def handle(self, event: ProductPriceChangedIntegrationEvent) -> None:
        await self._context.async_session.execute(
            insert(price_effects).values(
                event_id=str(event.event_id),
                product_id=event.product_id,
                price=str(event.price),
                seq=event.seq,
                handled_at=time.time(),
            )
        )


class UpdateBasketPricesOnProductPriceChanged(IntegrationEventHandler):
    """Keeps the basket's copy of prices, and tells the world about each updated item."""

    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def handle(self, event: ProductPriceChangedIntegrationEvent) -> None:
        session = self._context.session
        baskets = session.execute(
            select(basket_items.c.basket_id).where(basket_items.c.product_id == event.product_id)
        ).scalars()
        for basket_id in list(baskets):
            session.execute(
                update(basket_items)
                .where(
                    basket_items.c.basket_id == basket_id,
                    basket_items.c.product_id == event.product_id,
                )
                .values(price=str(event.price), updates=basket_items.c.updates + 1)
            )
            self._context.integration_events.publish(
                BasketItemPriceUpdatedIntegrationEvent(
                    basket_id=basket_id, product_id=event.product_id, price=event.price
                )
            )


class RecordRename(IntegrationEventHandler):
    """Written against version 2 of the rename contract only."""

    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def handle(self, event: ProductRenamedIntegrationEvent) -> None:
        self._context.session.execute(
            insert(renames).values(
                product_id=event.product_id, name=event.name, locale=event.locale
            )
        )


def build_basket(
    database_url: str,
    broker_url: str,
    name: str = "basket",
    *,
    handler: str = "record",
    before: Hook | None = None,
    create: bool = True,
) -> BoundedContext:
    """The basket context with one price handler: ``record``, ``async`` or ``update``."""
    context = BoundedContext(name, database_url=database_url, broker_url=broker_url)
    if create:
        context.create_tables()
        metadata.create_all(context.engine)
    if handler == "record":
        context.subscribe(RecordPriceChange(context, before))
    elif handler == "async":
        context.subscribe(AsyncRecordPriceChange(context))
    elif handler == "update":
        context.subscribe(UpdateBasketPricesOnProductPriceChanged(context))
    else:
        raise ValueError(f"unknown handler {handler!r}")
    return context


def context() -> BoundedContext:
    """What ``tidings consume|dlq ... tests.support.consumer_app:context`` loads (env URLs)."""
    return build_basket(
        os.environ[DATABASE_ENV],
        os.environ[BROKER_ENV],
        os.environ.get(NAME_ENV, "basket"),
        create=False,
    )
