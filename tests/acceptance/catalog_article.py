"""The catalog example of the main article, written with its shapes, on tidings.

A use case puts a product on sale and publishes the domain event ``ProductPutOnSale``;
three domain event handlers react inside the context: a projection, the
recommendations, and the handler that asks two queries and publishes the integration
event other contexts need. Constructor injection, ``execute``, ``handle``, ``ask`` and
``publish`` are the article's; only the infrastructure (repository, query handlers,
wiring) is ours.

The domain events, contracts and queries here are shared by the asyncio flavour in
``catalog_article_async``: only the application layer differs.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import ClassVar

from sqlalchemy import MetaData, Numeric, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tidings import (
    AggregateRoot,
    BoundedContext,
    DomainEvent,
    DomainEventHandler,
    DomainEventProducer,
    IntegrationEvent,
    IntegrationEventProducer,
    Query,
    QueryBus,
    QueryHandler,
    UseCase,
)

# -- domain ---------------------------------------------------------------------------


class CatalogModel(DeclarativeBase):
    metadata = MetaData()


class Product(AggregateRoot, CatalogModel):
    __tablename__ = "catalog_products"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    on_sale: Mapped[bool] = mapped_column(default=False)

    def put_on_sale(self) -> None:
        self.on_sale = True


class ProductDetails(CatalogModel):
    """What other contexts want to know and the use case does not need: price, stock."""

    __tablename__ = "catalog_product_details"

    product_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    stock: Mapped[int]


class ProductProjection(CatalogModel):
    __tablename__ = "catalog_product_projection"

    product_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    on_sale: Mapped[bool]


class Recommendation(CatalogModel):
    __tablename__ = "catalog_recommendations"

    product_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    recalculations: Mapped[int] = mapped_column(default=0)


class ProductPutOnSale(DomainEvent):
    product_id: str


# -- contracts and queries ------------------------------------------------------------


class ProductUpdatedIntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = "catalog.product.updated"
    event_version: ClassVar[int] = 1

    product_id: str
    name: str
    on_sale: bool
    price: Decimal
    stock: int

    @classmethod
    def from_product_details(
        cls, product: Product, details: ProductDetails
    ) -> ProductUpdatedIntegrationEvent:
        return cls(
            product_id=product.id,
            name=product.name,
            on_sale=product.on_sale,
            price=details.price,
            stock=details.stock,
        )


class GetProductQuery(Query[Product]):
    product_id: str


class GetProductDetailsQuery(Query[ProductDetails]):
    product_id: str


# -- application (the article's code) -------------------------------------------------


class ProductRepository:
    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def find(self, product_id: str) -> Product:
        return self._context.session.get_one(Product, product_id)

    def save(self, product: Product) -> None:
        self._context.session.add(product)


class PutProductOnSale(UseCase):
    def __init__(self, repository: ProductRepository, event_producer: DomainEventProducer):
        self._repository = repository
        self._event_producer = event_producer

    def execute(self, product_id: str) -> None:
        product = self._repository.find(product_id)
        product.put_on_sale()

        self._repository.save(product)

        self._event_producer.publish(
            ProductPutOnSale(product_id=product.id, occurred_at=datetime.now())
        )


class PublishUpdatedProductIntegrationEventOnProductPutOnSale(DomainEventHandler):
    def __init__(self, query_bus: QueryBus, integration_event_producer: IntegrationEventProducer):
        self._query_bus = query_bus
        self._integration_event_producer = integration_event_producer

    def handle(self, event: ProductPutOnSale) -> None:
        product = self._query_bus.ask(GetProductQuery(product_id=event.product_id))

        details = self._query_bus.ask(GetProductDetailsQuery(product_id=event.product_id))

        self._integration_event_producer.publish(
            ProductUpdatedIntegrationEvent.from_product_details(product, details)
        )


class ProjectProduct(UseCase):
    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def execute(self, product_id: str) -> None:
        session = self._context.session
        product = session.get_one(Product, product_id)
        session.merge(
            ProductProjection(product_id=product.id, name=product.name, on_sale=product.on_sale)
        )


class RecalculateRecommendations(UseCase):
    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def execute(self, product_id: str) -> None:
        session = self._context.session
        recommendation = session.get(Recommendation, product_id)
        if recommendation is None:
            recommendation = Recommendation(product_id=product_id, recalculations=0)
            session.add(recommendation)
        recommendation.recalculations += 1


class ProjectProductOnPutProductOnSale(DomainEventHandler):
    def __init__(self, project_product: ProjectProduct) -> None:
        self._project_product = project_product

    def handle(self, event: ProductPutOnSale) -> None:
        self._project_product.execute(product_id=event.product_id)


class RecalculateRecommendationsOnPutProductOnSale(DomainEventHandler):
    def __init__(self, recalculate_recommendations: RecalculateRecommendations) -> None:
        self._recalculate_recommendations = recalculate_recommendations

    def handle(self, event: ProductPutOnSale) -> None:
        self._recalculate_recommendations.execute(product_id=event.product_id)


# -- infrastructure -------------------------------------------------------------------


class GetProductQueryHandler(QueryHandler):
    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def handle(self, query: GetProductQuery) -> Product:
        return self._context.session.get_one(Product, query.product_id)


class GetProductDetailsQueryHandler(QueryHandler):
    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def handle(self, query: GetProductDetailsQuery) -> ProductDetails:
        statement = select(ProductDetails).where(ProductDetails.product_id == query.product_id)
        return self._context.session.scalars(statement).one()


def wire(context: BoundedContext) -> PutProductOnSale:
    """Compose the catalog context and return its use case, as an application would."""
    context.register_query_handler(GetProductQueryHandler(context))
    context.register_query_handler(GetProductDetailsQueryHandler(context))
    context.subscribe(ProjectProductOnPutProductOnSale(ProjectProduct(context)))
    context.subscribe(
        RecalculateRecommendationsOnPutProductOnSale(RecalculateRecommendations(context))
    )
    context.subscribe(
        PublishUpdatedProductIntegrationEventOnProductPutOnSale(
            context.query_bus, context.integration_events
        )
    )
    return PutProductOnSale(ProductRepository(context), context.domain_events)


def seed(context: BoundedContext) -> None:
    """Create the catalog tables and one product that is not on sale yet."""
    context.create_tables()
    CatalogModel.metadata.create_all(context.engine)
    with context.transaction() as session:
        session.add(Product(id="lamp-1", name="Reading lamp", on_sale=False))
        session.add(ProductDetails(product_id="lamp-1", price=Decimal("39.90"), stock=12))
