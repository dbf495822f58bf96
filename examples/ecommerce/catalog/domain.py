"""Catalog: products, their prices and whether they are on sale."""

from __future__ import annotations

from decimal import Decimal

from tidings.domain import AggregateRoot, DomainEvent


class ProductPutOnSale(DomainEvent):
    product_id: str


class ProductPriceChanged(DomainEvent):
    product_id: str
    old_price: Decimal
    new_price: Decimal


class Product(AggregateRoot):
    def __init__(self, id: str, name: str, price: Decimal) -> None:
        self.id = id
        self.name = name
        self.price = price
        self.on_sale = False

    def put_on_sale(self) -> None:
        self.on_sale = True

    def change_price(self, new_price: Decimal) -> ProductPriceChanged | None:
        if new_price <= 0:
            raise ValueError("a price must be positive")
        if new_price == self.price:
            return None
        changed = ProductPriceChanged(product_id=self.id, old_price=self.price, new_price=new_price)
        self.price = new_price
        return changed
