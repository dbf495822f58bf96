"""A context with real dead letters for the dashboard tests (and screenshots).

``pricing`` consumes ``PriceChangedIntegrationEvent``; its handler writes one effect row
per event and refuses the product ids in :attr:`RecordPrice.refused`, so a test makes
``handler_failed`` letters, fixes the handler (empties the set) and replays them.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import ClassVar
from uuid import uuid4

from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select

from tidings import (
    BoundedContext,
    DomainEvent,
    DomainEventHandler,
    IntegrationEvent,
    IntegrationEventHandler,
)
from tidings.consumer.dead_letters import DeadLetterReason, DeadLetterStore
from tidings.contracts.cloudevents import CloudEvent, encode_binary
from tidings.persistence.tables import relay_members, relay_partitions

PRICE_CHANGED = "dashboardtest.price_changed"
DATABASE_ENV = "TIDINGS_DASHBOARD_TEST_DATABASE_URL"
CATALOG_ENV = "TIDINGS_DASHBOARD_TEST_CATALOG_URL"

metadata = MetaData()
price_effects = Table(
    "dashboardtest_price_effects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("product_id", String(64), nullable=False),
)


class PriceChangedIntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = PRICE_CHANGED
    event_version: ClassVar[int] = 1

    product_id: str
    price: int


class RecordPrice(IntegrationEventHandler):
    """One effect row per event; refuses the products in ``refused``."""

    refused: ClassVar[set[str]] = set()

    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def handle(self, event: PriceChangedIntegrationEvent) -> None:
        if event.product_id in self.refused:
            raise RuntimeError(f"price of {event.product_id} refused")
        self._context.session.execute(
            insert(price_effects).values(event_id=str(event.event_id), product_id=event.product_id)
        )


def build_pricing(
    database_url: str, broker_url: str = "memory://dashboard", name: str = "pricing"
) -> BoundedContext:
    """The consuming context, its tables created."""
    context = BoundedContext(name, database_url=database_url, broker_url=broker_url)
    context.create_tables()
    metadata.create_all(context.engine)
    context.subscribe(RecordPrice(context))
    return context


class ProductPriceChanged(DomainEvent):
    product_id: str
    price: int


class PublishPriceChangedOnProductPriceChanged(DomainEventHandler):
    publishes = (PriceChangedIntegrationEvent,)

    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def handle(self, event: ProductPriceChanged) -> None:
        self._context.integration_events.publish(
            PriceChangedIntegrationEvent(product_id=event.product_id, price=event.price)
        )


def build_catalog(database_url: str, broker_url: str) -> BoundedContext:
    """The publisher: a price change (domain event) becomes the integration event."""
    context = BoundedContext("catalog", database_url=database_url, broker_url=broker_url)
    context.create_tables()
    context.subscribe(PublishPriceChangedOnProductPriceChanged(context))
    return context


def publish_prices(catalog: BoundedContext, *product_ids: str, correlation_id: str) -> None:
    """One transaction changing each product's price, all in one correlation."""
    with catalog.transaction(correlation_id=correlation_id):
        for product_id in product_ids:
            catalog.domain_events.publish(ProductPriceChanged(product_id=product_id, price=42))


def from_environment() -> BoundedContext:
    """The pricing context on ``$TIDINGS_DASHBOARD_TEST_DATABASE_URL`` (for CLI targets)."""
    return build_pricing(os.environ[DATABASE_ENV])


def catalog_from_environment() -> BoundedContext:
    """The catalog on ``$TIDINGS_DASHBOARD_TEST_CATALOG_URL`` (for CLI targets)."""
    return build_catalog(os.environ[CATALOG_ENV], "memory://dashboard")


async def add_letter(
    context: BoundedContext,
    product_id: str,
    *,
    correlation_id: str | None = None,
    failed_ago: timedelta = timedelta(0),
) -> tuple[str, str]:
    """A ``handler_failed`` letter of a valid event, as the consumer stores it:
    (letter id, event id)."""
    event_id = str(uuid4())
    event = CloudEvent(
        id=event_id,
        source="catalog",
        type=PRICE_CHANGED,
        dataversion=1,
        correlationid=correlation_id or event_id,
        data_json=json.dumps({"product_id": product_id, "price": 42}).encode(),
    )
    headers, body = encode_binary(event)
    letter_id = await DeadLetterStore(context.async_engine).add(
        consumer=context.consumer_group,
        reason=DeadLetterReason.HANDLER_FAILED,
        body=body,
        headers=headers,
        error=RuntimeError(f"price of {product_id} refused"),
        attempts=3,
        event_id=event_id,
        event_type=PRICE_CHANGED,
        event_version=1,
        partition_key=product_id,
        first_failed_at=datetime.now(UTC) - failed_ago,
    )
    return letter_id, event_id


async def add_undecodable_letter(context: BoundedContext) -> str:
    """A letter whose body is not a CloudEvent: replaying it fails again."""
    return await DeadLetterStore(context.async_engine).add(
        consumer=context.consumer_group,
        reason=DeadLetterReason.UNDECODABLE,
        body=b"\x00not json",
        headers={"content-type": "application/json"},
        error=ValueError("body is not a JSON object"),
        attempts=1,
    )


async def set_relay_lease(context: BoundedContext, owner: str, expires_in: timedelta) -> None:
    """One relay holding every partition, as a relay writes it (expired when
    ``expires_in`` < 0)."""
    now = datetime.now(UTC)
    async with context.async_engine.begin() as connection:
        await connection.execute(relay_members.delete())
        await connection.execute(relay_partitions.delete())
        await connection.execute(
            relay_partitions.insert(),
            [
                {
                    "name": context.name,
                    "partition_no": n,
                    "owner": owner,
                    "expires_at": now + expires_in,
                }
                for n in range(16)
            ],
        )
        await connection.execute(
            relay_members.insert().values(
                name=context.name,
                owner=owner,
                expires_at=now + expires_in,
                published_total=10,
                rate_per_s=12.5,
                updated_at=now,
            )
        )


async def effect_products(context: BoundedContext) -> list[str]:
    async with context.async_engine.connect() as connection:
        rows = await connection.execute(select(price_effects.c.product_id))
        return sorted(row[0] for row in rows)
