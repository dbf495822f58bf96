"""What Inventory tells other contexts."""

from __future__ import annotations

from typing import ClassVar

from tidings import IntegrationEvent


class InventoryModifiedIntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = "inventory.stock.modified"
    event_version: ClassVar[int] = 1

    product_id: str
    available: int
