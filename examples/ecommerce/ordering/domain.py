"""Ordering: orders and buyers (seed 001: a user becomes a buyer when ordering)."""

from __future__ import annotations

import json
from decimal import Decimal

from tidings.domain import AggregateRoot, DomainEvent


class OrderStartedDomainEvent(DomainEvent):
    order_id: str
    user_id: str


class OrderConfirmed(DomainEvent):
    order_id: str


class OrderPaid(DomainEvent):
    order_id: str


class Order(AggregateRoot):
    def __init__(self, id: str, user_id: str, lines_json: str, total: Decimal) -> None:
        self.id = id
        self.user_id = user_id
        self.lines_json = lines_json
        self.total = total
        self.status = "started"

    @classmethod
    def start(cls, id: str, user_id: str, lines: list[tuple[str, int, Decimal]]) -> Order:
        if not lines:
            raise ValueError("an order needs at least one line")
        total = sum((quantity * price for _, quantity, price in lines), Decimal("0"))
        encoded = json.dumps([[p, q, str(price)] for p, q, price in lines])
        order = cls(id, user_id, encoded, total)
        order.record(OrderStartedDomainEvent(order_id=id, user_id=user_id))
        return order

    @property
    def lines(self) -> list[tuple[str, int, Decimal]]:
        return [(p, int(q), Decimal(price)) for p, q, price in json.loads(self.lines_json)]

    def confirm(self) -> None:
        if self.status != "started":
            raise ValueError(f"order {self.id} is {self.status}, it cannot be confirmed")
        self.status = "confirmed"
        self.record(OrderConfirmed(order_id=self.id))

    def mark_paid(self) -> None:
        if self.status == "paid":
            return
        self.status = "paid"
        self.record(OrderPaid(order_id=self.id))


class Buyer(AggregateRoot):
    """A user who ordered at least once; created by a domain event handler."""

    def __init__(self, user_id: str, name: str, email: str) -> None:
        self.user_id = user_id
        self.name = name
        self.email = email


class Customer:
    """Ordering's copy of Identity's user data."""

    def __init__(self, user_id: str, name: str, email: str) -> None:
        self.user_id = user_id
        self.name = name
        self.email = email
