"""Basket's tables, mappings and repositories."""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, Numeric, String, Table, select
from sqlalchemy.orm import Session, registry

from examples.ecommerce.basket.domain import BasketItem, ProductPrice

metadata = MetaData()
basket_items = Table(
    "basket_items",
    metadata,
    Column("customer_id", String(36), primary_key=True),
    Column("product_id", String(36), primary_key=True),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", Numeric(12, 2), nullable=False),
)
product_prices = Table(
    "product_prices",
    metadata,
    Column("product_id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("price", Numeric(12, 2), nullable=False),
)
_registry = registry()
_registry.map_imperatively(BasketItem, basket_items)
_registry.map_imperatively(ProductPrice, product_prices)


class BasketRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def price_of(self, product_id: str, *, lock: bool = False) -> ProductPrice | None:
        """The local copy of a product's price; ``lock`` holds its row until commit.

        Adding an item and repricing items after a price change both lock the copy
        first: otherwise, under READ COMMITTED, an item added while a price change is
        being applied keeps the old price (SQLite serializes writers anyway).
        """
        return self._session.get(ProductPrice, product_id, with_for_update=lock)

    def save_price(self, price: ProductPrice) -> None:
        self._session.add(price)

    def item(self, customer_id: str, product_id: str) -> BasketItem | None:
        return self._session.get(BasketItem, (customer_id, product_id))

    def add(self, item: BasketItem) -> None:
        self._session.add(item)

    def items_of_product(self, product_id: str) -> list[BasketItem]:
        query = select(BasketItem).where(basket_items.c.product_id == product_id)
        return list(self._session.scalars(query))
