"""Payments' table and mapping."""

from __future__ import annotations

from sqlalchemy import Column, MetaData, Numeric, String, Table
from sqlalchemy.orm import Session, registry

from examples.ecommerce.payments.domain import Payment

metadata = MetaData()
payments = Table(
    "payments",
    metadata,
    Column("order_id", String(36), primary_key=True),
    Column("amount", Numeric(12, 2), nullable=False),
)
registry().map_imperatively(Payment, payments)


class PaymentRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def find(self, order_id: str) -> Payment | None:
        return self._session.get(Payment, order_id)

    def add(self, payment: Payment) -> None:
        self._session.add(payment)
