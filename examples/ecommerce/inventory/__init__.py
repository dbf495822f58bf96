"""Inventory: reserves stock for confirmed orders; publishes InventoryModifiedIntegrationEvent."""

from examples.ecommerce.inventory.application import (
    PublishInventoryModifiedOnStockRecalculated,
    ReserveStockOnOrderConfirmed,
    Restock,
)
from examples.ecommerce.inventory.persistence import StockRepository, metadata
from examples.ecommerce.settings import broker_url, consumer_group, database_url
from tidings import BoundedContext

context = BoundedContext(
    "inventory",
    database_url=database_url("inventory"),
    broker_url=broker_url(),
    consumer_group=consumer_group("inventory"),
)


def _repository() -> StockRepository:
    return StockRepository(context.session)


context.subscribe(ReserveStockOnOrderConfirmed(_repository))
context.subscribe(PublishInventoryModifiedOnStockRecalculated(context.integration_events))
restock = Restock(_repository)
business_metadata = metadata

__all__ = ["business_metadata", "context", "restock"]
