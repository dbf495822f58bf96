"""Payments: captures the amount of each confirmed order (simulated provider)."""

from __future__ import annotations

from decimal import Decimal

from tidings.domain import AggregateRoot, DomainEvent


class PaymentCaptured(DomainEvent):
    order_id: str
    amount: Decimal


class Payment(AggregateRoot):
    def __init__(self, order_id: str, amount: Decimal) -> None:
        self.order_id = order_id
        self.amount = amount

    @classmethod
    def capture(cls, order_id: str, amount: Decimal) -> Payment:
        payment = cls(order_id, amount)
        payment.record(PaymentCaptured(order_id=order_id, amount=amount))
        return payment
