"""Catalog's use cases and handlers, in the article's shapes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from examples.ecommerce.catalog.contracts import (
    ProductDetails,
    ProductPriceChangedIntegrationEvent,
    ProductUpdatedIntegrationEvent,
    ProductView,
)
from examples.ecommerce.catalog.domain import Product, ProductPriceChanged, ProductPutOnSale
from examples.ecommerce.catalog.persistence import (
    ProductRepository,
    product_projection,
    recommendations,
)
from tidings import (
    DomainEventHandler,
    DomainEventProducer,
    IntegrationEventProducer,
    Query,
    QueryBus,
    QueryHandler,
    UseCase,
)

Repository = Callable[[], ProductRepository]


class AddProduct(UseCase):
    def __init__(self, repository: Repository) -> None:
        self._repository = repository

    def execute(self, product_id: str, name: str, price: Decimal) -> None:
        self._repository().add(Product(product_id, name, price))


class PutProductOnSale(UseCase):
    def __init__(self, repository: Repository, event_producer: DomainEventProducer) -> None:
        self._repository = repository
        self._event_producer = event_producer

    def execute(self, product_id: str) -> None:
        repository = self._repository()
        product = repository.find(product_id)
        product.put_on_sale()

        repository.save(product)

        self._event_producer.publish(
            ProductPutOnSale(product_id=product.id, occurred_at=datetime.now())
        )


class ChangeProductPrice(UseCase):
    def __init__(self, repository: Repository, event_producer: DomainEventProducer) -> None:
        self._repository = repository
        self._event_producer = event_producer

    def execute(self, product_id: str, new_price: Decimal) -> None:
        repository = self._repository()
        product = repository.find(product_id)
        changed = product.change_price(new_price)
        repository.save(product)
        if changed is not None:
            self._event_producer.publish(changed)


class GetProductQuery(Query[ProductView]):
    product_id: str


class GetProductDetailsQuery(Query[ProductDetails]):
    product_id: str


class GetProductQueryHandler(QueryHandler):
    def __init__(self, repository: Repository) -> None:
        self._repository = repository

    def handle(self, query: GetProductQuery) -> ProductView:
        product = self._repository().find(query.product_id)
        return ProductView(product.id, product.name, product.price, product.on_sale)


class GetProductDetailsQueryHandler(QueryHandler):
    def __init__(self, session: Callable[[], Session]) -> None:
        self._session = session

    def handle(self, query: GetProductDetailsQuery) -> ProductDetails:
        session = self._session()
        row = session.execute(
            select(recommendations.c.recommended_with).where(
                recommendations.c.product_id == query.product_id
            )
        ).first()
        return ProductDetails(row[0].split(",") if row and row[0] else [])


class ProjectProduct(UseCase):
    """Keeps the read model of products on sale."""

    def __init__(self, repository: Repository, session: Callable[[], Session]) -> None:
        self._repository = repository
        self._session = session

    def execute(self, product_id: str) -> None:
        product = self._repository().find(product_id)
        session = self._session()
        session.execute(
            delete(product_projection).where(product_projection.c.product_id == product_id)
        )
        session.execute(
            insert(product_projection).values(
                product_id=product.id, name=product.name, price=product.price
            )
        )


class RecalculateRecommendations(UseCase):
    """Recommends the other products on sale (a stand-in for a real model)."""

    def __init__(self, repository: Repository, session: Callable[[], Session]) -> None:
        self._repository = repository
        self._session = session

    def execute(self, product_id: str) -> None:
        others = [p for p in self._repository().on_sale_ids() if p != product_id][:3]
        session = self._session()
        session.execute(delete(recommendations).where(recommendations.c.product_id == product_id))
        session.execute(
            insert(recommendations).values(product_id=product_id, recommended_with=",".join(others))
        )


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


class PublishUpdatedProductIntegrationEventOnProductPutOnSale(DomainEventHandler):
    publishes = (ProductUpdatedIntegrationEvent,)

    def __init__(self, query_bus: QueryBus, integration_event_producer: IntegrationEventProducer):
        self._query_bus = query_bus
        self._integration_event_producer = integration_event_producer

    def handle(self, event: ProductPutOnSale) -> None:
        product = self._query_bus.ask(GetProductQuery(product_id=event.product_id))

        details = self._query_bus.ask(GetProductDetailsQuery(product_id=event.product_id))

        self._integration_event_producer.publish(
            ProductUpdatedIntegrationEvent.from_product_details(product, details)
        )


class PublishPriceChangedIntegrationEventOnProductPriceChanged(DomainEventHandler):
    publishes = (ProductPriceChangedIntegrationEvent,)

    def __init__(self, integration_event_producer: IntegrationEventProducer) -> None:
        self._integration_event_producer = integration_event_producer

    def handle(self, event: ProductPriceChanged) -> None:
        self._integration_event_producer.publish(
            ProductPriceChangedIntegrationEvent(product_id=event.product_id, price=event.new_price)
        )
