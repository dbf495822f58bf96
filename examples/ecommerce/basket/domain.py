"""Basket: customers' baskets, priced from a local copy of the catalog's prices."""

from __future__ import annotations

from decimal import Decimal


class BasketItem:
    def __init__(self, customer_id: str, product_id: str, quantity: int, unit_price: Decimal):
        if quantity < 1:
            raise ValueError("a basket item needs a positive quantity")
        self.customer_id = customer_id
        self.product_id = product_id
        self.quantity = quantity
        self.unit_price = unit_price

    def reprice(self, unit_price: Decimal) -> None:
        self.unit_price = unit_price


class ProductPrice:
    """Basket's copy of a product's price, fed by Catalog's integration events."""

    def __init__(self, product_id: str, name: str, price: Decimal) -> None:
        self.product_id = product_id
        self.name = name
        self.price = price
