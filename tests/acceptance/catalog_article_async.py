"""The article's catalog example for asyncio applications.

The same shapes as ``catalog_article`` (constructor injection, ``execute``, ``handle``,
``ask``, ``publish``) with ``async def`` and ``await``. The domain, the contracts and
the queries are shared with the synchronous flavour: only the application layer and
the repositories know about asyncio.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import select

from tests.acceptance.catalog_article import (
    CatalogModel,
    GetProductDetailsQuery,
    GetProductQuery,
    Product,
    ProductDetails,
    ProductProjection,
    ProductPutOnSale,
    ProductUpdatedIntegrationEvent,
    Recommendation,
)
from tidings import (
    AsyncDomainEventProducer,
    AsyncIntegrationEventProducer,
    AsyncQueryBus,
    BoundedContext,
    DomainEventHandler,
    QueryHandler,
    UseCase,
)


class ProductRepository:
    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    async def find(self, product_id: str) -> Product:
        return await self._context.async_session.get_one(Product, product_id)

    async def save(self, product: Product) -> None:
        self._context.async_session.add(product)


class PutProductOnSale(UseCase):
    def __init__(self, repository: ProductRepository, event_producer: AsyncDomainEventProducer):
        self._repository = repository
        self._event_producer = event_producer

    async def execute(self, product_id: str) -> None:
        product = await self._repository.find(product_id)
        product.put_on_sale()

        await self._repository.save(product)

        await self._event_producer.publish(
            ProductPutOnSale(product_id=product.id, occurred_at=datetime.now())
        )


class PublishUpdatedProductIntegrationEventOnProductPutOnSale(DomainEventHandler):
    def __init__(
        self, query_bus: AsyncQueryBus, integration_event_producer: AsyncIntegrationEventProducer
    ):
        self._query_bus = query_bus
        self._integration_event_producer = integration_event_producer

    async def handle(self, event: ProductPutOnSale) -> None:
        product = await self._query_bus.ask(GetProductQuery(product_id=event.product_id))

        details = await self._query_bus.ask(GetProductDetailsQuery(product_id=event.product_id))

        await self._integration_event_producer.publish(
            ProductUpdatedIntegrationEvent.from_product_details(product, details)
        )


class ProjectProduct(UseCase):
    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    async def execute(self, product_id: str) -> None:
        session = self._context.async_session
        product = await session.get_one(Product, product_id)
        await session.merge(
            ProductProjection(product_id=product.id, name=product.name, on_sale=product.on_sale)
        )


class RecalculateRecommendations(UseCase):
    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    async def execute(self, product_id: str) -> None:
        session = self._context.async_session
        recommendation = await session.get(Recommendation, product_id)
        if recommendation is None:
            recommendation = Recommendation(product_id=product_id, recalculations=0)
            session.add(recommendation)
        recommendation.recalculations += 1


class ProjectProductOnPutProductOnSale(DomainEventHandler):
    def __init__(self, project_product: ProjectProduct) -> None:
        self._project_product = project_product

    async def handle(self, event: ProductPutOnSale) -> None:
        await self._project_product.execute(product_id=event.product_id)


class RecalculateRecommendationsOnPutProductOnSale(DomainEventHandler):
    def __init__(self, recalculate_recommendations: RecalculateRecommendations) -> None:
        self._recalculate_recommendations = recalculate_recommendations

    async def handle(self, event: ProductPutOnSale) -> None:
        await self._recalculate_recommendations.execute(product_id=event.product_id)


class GetProductQueryHandler(QueryHandler):
    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    async def handle(self, query: GetProductQuery) -> Product:
        return await self._context.async_session.get_one(Product, query.product_id)


class GetProductDetailsQueryHandler(QueryHandler):
    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    async def handle(self, query: GetProductDetailsQuery) -> ProductDetails:
        statement = select(ProductDetails).where(ProductDetails.product_id == query.product_id)
        return (await self._context.async_session.scalars(statement)).one()


def wire(context: BoundedContext) -> PutProductOnSale:
    """Compose the catalog context for asyncio and return its use case."""
    context.register_query_handler(GetProductQueryHandler(context))
    context.register_query_handler(GetProductDetailsQueryHandler(context))
    context.subscribe(ProjectProductOnPutProductOnSale(ProjectProduct(context)))
    context.subscribe(
        RecalculateRecommendationsOnPutProductOnSale(RecalculateRecommendations(context))
    )
    context.subscribe(
        PublishUpdatedProductIntegrationEventOnProductPutOnSale(
            context.async_query_bus, context.async_integration_events
        )
    )
    return PutProductOnSale(ProductRepository(context), context.async_domain_events)


async def seed(context: BoundedContext) -> None:
    """Create the catalog tables and one product that is not on sale yet."""
    await context.create_tables_async()
    async with context.async_engine.begin() as connection:
        await connection.run_sync(CatalogModel.metadata.create_all)
    async with context.transaction() as session:
        session.add(Product(id="lamp-1", name="Reading lamp", on_sale=False))
        session.add(ProductDetails(product_id="lamp-1", price=Decimal("39.90"), stock=12))
