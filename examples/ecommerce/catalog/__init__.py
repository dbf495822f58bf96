"""Catalog: puts products on sale and changes prices; publishes product contracts."""

from sqlalchemy.orm import Session

from examples.ecommerce.catalog.application import (
    AddProduct,
    ChangeProductPrice,
    GetProductDetailsQueryHandler,
    GetProductQueryHandler,
    ProjectProduct,
    ProjectProductOnPutProductOnSale,
    PublishPriceChangedIntegrationEventOnProductPriceChanged,
    PublishUpdatedProductIntegrationEventOnProductPutOnSale,
    PutProductOnSale,
    RecalculateRecommendations,
    RecalculateRecommendationsOnPutProductOnSale,
)
from examples.ecommerce.catalog.persistence import ProductRepository, metadata
from examples.ecommerce.settings import broker_url, consumer_group, database_url
from tidings import BoundedContext

context = BoundedContext(
    "catalog",
    database_url=database_url("catalog"),
    broker_url=broker_url(),
    consumer_group=consumer_group("catalog"),
)


def _repository() -> ProductRepository:
    return ProductRepository(context.session)


def _session() -> Session:
    return context.session


context.register_query_handler(GetProductQueryHandler(_repository))
context.register_query_handler(GetProductDetailsQueryHandler(_session))
context.subscribe(ProjectProductOnPutProductOnSale(ProjectProduct(_repository, _session)))
context.subscribe(
    RecalculateRecommendationsOnPutProductOnSale(RecalculateRecommendations(_repository, _session))
)
context.subscribe(
    PublishUpdatedProductIntegrationEventOnProductPutOnSale(
        context.query_bus, context.integration_events
    )
)
context.subscribe(
    PublishPriceChangedIntegrationEventOnProductPriceChanged(context.integration_events)
)

add_product = AddProduct(_repository)
put_product_on_sale = PutProductOnSale(_repository, context.domain_events)
change_product_price = ChangeProductPrice(_repository, context.domain_events)
business_metadata = metadata

__all__ = [
    "add_product",
    "business_metadata",
    "change_product_price",
    "context",
    "put_product_on_sale",
]
