"""Inventory's tables and mapping."""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, String, Table
from sqlalchemy.orm import Session, registry

from examples.ecommerce.inventory.domain import StockItem

metadata = MetaData()
stock_items = Table(
    "stock_items",
    metadata,
    Column("product_id", String(36), primary_key=True),
    Column("on_hand", Integer, nullable=False),
    Column("reserved", Integer, nullable=False),
)
# Which orders were already reserved: reserving is a business fact, kept even if the
# inbox that guards redeliveries is purged one day.
reservations = Table(
    "reservations",
    metadata,
    Column("order_id", String(36), primary_key=True),
)
registry().map_imperatively(StockItem, stock_items)


class StockRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def find(self, product_id: str) -> StockItem | None:
        return self._session.get(StockItem, product_id)

    def add(self, item: StockItem) -> None:
        self._session.add(item)

    def reserved_already(self, order_id: str) -> bool:
        row = self._session.execute(
            reservations.select().where(reservations.c.order_id == order_id)
        ).first()
        return row is not None

    def remember_reservation(self, order_id: str) -> None:
        self._session.execute(reservations.insert().values(order_id=order_id))
