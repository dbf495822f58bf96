"""Basket's use case and its integration event handlers."""

from __future__ import annotations

from collections.abc import Callable

from examples.ecommerce.basket.domain import BasketItem, ProductPrice
from examples.ecommerce.basket.persistence import BasketRepository
from examples.ecommerce.catalog.contracts import (
    ProductPriceChangedIntegrationEvent,
    ProductUpdatedIntegrationEvent,
)
from tidings import IntegrationEventHandler, UseCase

Repository = Callable[[], BasketRepository]


class AddItemToBasket(UseCase):
    def __init__(self, repository: Repository) -> None:
        self._repository = repository

    def execute(self, customer_id: str, product_id: str, quantity: int) -> bool:
        """Add the item at the current local price; False if the product is unknown yet."""
        repository = self._repository()
        price = repository.price_of(product_id, lock=True)
        if price is None:
            return False
        item = repository.item(customer_id, product_id)
        if item is None:
            repository.add(BasketItem(customer_id, product_id, quantity, price.price))
        else:
            item.quantity += quantity
        return True


class CopyProductOnProductUpdated(IntegrationEventHandler):
    def __init__(self, repository: Repository) -> None:
        self._repository = repository

    def handle(self, event: ProductUpdatedIntegrationEvent) -> None:
        repository = self._repository()
        copy = repository.price_of(event.product_id)
        if copy is None:
            repository.save_price(ProductPrice(event.product_id, event.name, event.price))
        else:
            copy.name, copy.price = event.name, event.price


class UpdateBasketPricesOnProductPriceChanged(IntegrationEventHandler):
    """The second article's scenario: a price changes in Catalog, baskets follow."""

    def __init__(self, repository: Repository) -> None:
        self._repository = repository

    def handle(self, event: ProductPriceChangedIntegrationEvent) -> None:
        repository = self._repository()
        copy = repository.price_of(event.product_id, lock=True)
        if copy is None:
            repository.save_price(ProductPrice(event.product_id, event.product_id, event.price))
        else:
            copy.price = event.price
        for item in repository.items_of_product(event.product_id):
            item.reprice(event.price)
