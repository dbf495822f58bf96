"""A FastAPI application running two bounded contexts in its own event loop.

``POST /products`` adds a product in the catalog's transaction; the domain event it
records is handled in that transaction by a handler that publishes
``ProductListedIntegrationEvent`` to the outbox. The relay and the consumer run inside
the app (``tidings_lifespan``); the search context consumes the contract and indexes
the product, so ``GET /search?q=`` finds it moments later.

    TIDINGS_API_DIR=/tmp/shop uvicorn examples.catalog_api.app:app

Both contexts keep SQLite files in ``TIDINGS_API_DIR`` (default ``.tidings-api``) and
share the embedded SQLite-file broker there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, ClassVar

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy import Column, MetaData, String, Table, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings import (
    AsyncIntegrationEventProducer,
    BoundedContext,
    DomainEvent,
    DomainEventHandler,
    IntegrationEvent,
    IntegrationEventHandler,
    UseCase,
)
from tidings.integrations.fastapi import tidings_lifespan, transaction

FOLDER = Path(os.environ.get("TIDINGS_API_DIR", ".tidings-api"))
FOLDER.mkdir(parents=True, exist_ok=True)
BROKER = f"sqlite:///{FOLDER / 'broker.db'}"

catalog = BoundedContext(
    "catalog-api", database_url=f"sqlite:///{FOLDER / 'catalog.db'}", broker_url=BROKER
)
search = BoundedContext(
    "search", database_url=f"sqlite:///{FOLDER / 'search.db'}", broker_url=BROKER
)

tables = MetaData()
products = Table(
    "api_products",
    tables,
    Column("product_id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
)
search_index = Table(
    "api_search_index",
    tables,
    Column("product_id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
)


class ProductListed(DomainEvent):
    product_id: str
    name: str


class ProductListedIntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = "catalog_api.product.listed"
    product_id: str
    name: str


class ListProduct(UseCase):
    """Add a product to the catalog; other contexts hear of it through the contract."""

    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    async def execute(self, product_id: str, name: str) -> None:
        await self._context.async_session.execute(
            insert(products).values(product_id=product_id, name=name)
        )
        await self._context.async_domain_events.publish(
            ProductListed(product_id=product_id, name=name)
        )


class PublishProductListedOnProductListed(DomainEventHandler):
    publishes = (ProductListedIntegrationEvent,)

    def __init__(self, producer: AsyncIntegrationEventProducer) -> None:
        self._producer = producer

    async def handle(self, event: ProductListed) -> None:
        await self._producer.publish(
            ProductListedIntegrationEvent(product_id=event.product_id, name=event.name)
        )


class IndexProductOnProductListed(IntegrationEventHandler):
    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    async def handle(self, event: ProductListedIntegrationEvent) -> None:
        await self._context.async_session.execute(
            insert(search_index).values(product_id=event.product_id, name=event.name)
        )


catalog.subscribe(PublishProductListedOnProductListed(catalog.async_integration_events))
search.subscribe(IndexProductOnProductListed(search))


def create_tables() -> None:
    """The tidings tables and the example's own, in both databases."""
    for context in (catalog, search):
        context.create_tables()
        tables.create_all(context.engine)
        context.dispose()


create_tables()
app = FastAPI(title="catalog API", lifespan=tidings_lifespan(catalog, search))
CatalogSession = Annotated[AsyncSession, transaction(catalog)]
SearchSession = Annotated[AsyncSession, transaction(search)]


class NewProduct(BaseModel):
    product_id: str
    name: str


@app.post("/products", status_code=201)
async def list_product(body: NewProduct, session: CatalogSession) -> dict[str, str]:
    """Add a product: committed, with its integration event, before this answers."""
    exists = await session.execute(
        select(products.c.product_id).where(products.c.product_id == body.product_id)
    )
    if exists.first() is not None:
        raise HTTPException(409, f"product {body.product_id} exists")
    await ListProduct(catalog).execute(body.product_id, body.name)
    return {"product_id": body.product_id}


@app.get("/search")
async def find(q: str, session: SearchSession) -> list[dict[str, str]]:
    """Products whose name contains ``q``, from the search context's own index."""
    rows = await session.execute(
        select(search_index).where(search_index.c.name.contains(q)).order_by("product_id")
    )
    return [dict(row._mapping) for row in rows]
