"""Basket: keeps a local copy of catalog prices and reprices basket items."""

from examples.ecommerce.basket.application import (
    AddItemToBasket,
    CopyProductOnProductUpdated,
    UpdateBasketPricesOnProductPriceChanged,
)
from examples.ecommerce.basket.persistence import BasketRepository, metadata
from examples.ecommerce.settings import broker_url, consumer_group, database_url
from tidings import BoundedContext

context = BoundedContext(
    "basket",
    database_url=database_url("basket"),
    broker_url=broker_url(),
    consumer_group=consumer_group("basket"),
)


def _repository() -> BasketRepository:
    return BasketRepository(context.session)


context.subscribe(CopyProductOnProductUpdated(_repository))
context.subscribe(UpdateBasketPricesOnProductPriceChanged(_repository))
add_item_to_basket = AddItemToBasket(_repository)
business_metadata = metadata

__all__ = ["add_item_to_basket", "business_metadata", "context"]
