"""Inventory's use case and handlers."""

from __future__ import annotations

from collections.abc import Callable

from examples.ecommerce.inventory.contracts import InventoryModifiedIntegrationEvent
from examples.ecommerce.inventory.domain import StockItem, StockRecalculated
from examples.ecommerce.inventory.persistence import StockRepository
from examples.ecommerce.ordering.contracts import OrderConfirmedIntegrationEvent
from tidings import DomainEventHandler, IntegrationEventHandler, IntegrationEventProducer, UseCase

Repository = Callable[[], StockRepository]


class Restock(UseCase):
    def __init__(self, repository: Repository) -> None:
        self._repository = repository

    def execute(self, product_id: str, quantity: int) -> None:
        repository = self._repository()
        item = repository.find(product_id)
        if item is None:
            item = StockItem(product_id, 0)
            repository.add(item)
        item.restock(quantity)


class ReserveStockOnOrderConfirmed(IntegrationEventHandler):
    def __init__(self, repository: Repository) -> None:
        self._repository = repository

    def handle(self, event: OrderConfirmedIntegrationEvent) -> None:
        repository = self._repository()
        if repository.reserved_already(event.order_id):
            return
        repository.remember_reservation(event.order_id)
        for line in event.lines:
            item = repository.find(line.product_id)
            if item is None:
                item = StockItem(line.product_id, 0)
                repository.add(item)
            item.reserve(line.quantity)


class PublishInventoryModifiedOnStockRecalculated(DomainEventHandler):
    publishes = (InventoryModifiedIntegrationEvent,)

    def __init__(self, producer: IntegrationEventProducer) -> None:
        self._producer = producer

    def handle(self, event: StockRecalculated) -> None:
        self._producer.publish(
            InventoryModifiedIntegrationEvent(
                product_id=event.product_id, available=event.on_hand - event.reserved
            )
        )
