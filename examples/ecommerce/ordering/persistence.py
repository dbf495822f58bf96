"""Ordering's tables, mappings and repository."""

from __future__ import annotations

from sqlalchemy import Column, MetaData, Numeric, String, Table, Text
from sqlalchemy.orm import Session, registry

from examples.ecommerce.ordering.domain import Buyer, Customer, Order

metadata = MetaData()
orders = Table(
    "orders",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), nullable=False),
    Column("lines_json", Text, nullable=False),
    Column("total", Numeric(12, 2), nullable=False),
    Column("status", String(20), nullable=False),
)
buyers = Table(
    "buyers",
    metadata,
    Column("user_id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("email", String(200), nullable=False),
)
customers = Table(
    "customers",
    metadata,
    Column("user_id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("email", String(200), nullable=False),
)
_registry = registry()
_registry.map_imperatively(Order, orders)
_registry.map_imperatively(Buyer, buyers)
_registry.map_imperatively(Customer, customers)


class OrderingRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, aggregate: Order | Buyer | Customer) -> None:
        self._session.add(aggregate)

    def order(self, order_id: str) -> Order:
        order = self._session.get(Order, order_id)
        if order is None:
            raise LookupError(f"no order {order_id}")
        return order

    def buyer(self, user_id: str) -> Buyer | None:
        return self._session.get(Buyer, user_id)

    def customer(self, user_id: str) -> Customer | None:
        return self._session.get(Customer, user_id)
