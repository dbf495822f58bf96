"""Inventory: stock on hand and reserved per product."""

from __future__ import annotations

from tidings.domain import AggregateRoot, DomainEvent


class StockRecalculated(DomainEvent):
    product_id: str
    on_hand: int
    reserved: int


class StockItem(AggregateRoot):
    def __init__(self, product_id: str, on_hand: int) -> None:
        self.product_id = product_id
        self.on_hand = on_hand
        self.reserved = 0

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    def restock(self, quantity: int) -> None:
        self.on_hand += quantity
        self._recalculated()

    def reserve(self, quantity: int) -> None:
        self.reserved += quantity
        self._recalculated()

    def _recalculated(self) -> None:
        self.record(
            StockRecalculated(
                product_id=self.product_id, on_hand=self.on_hand, reserved=self.reserved
            )
        )
