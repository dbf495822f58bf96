"""What Ordering tells other contexts, and the payment contract it reacts to."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from pydantic import BaseModel

from tidings import IntegrationEvent


class OrderLine(BaseModel):
    product_id: str
    quantity: int
    unit_price: Decimal


class OrderConfirmedIntegrationEvent(IntegrationEvent):
    """The domain concept is shared by every context, so the contract mirrors it."""

    event_type: ClassVar[str] = "ordering.order.confirmed"
    event_version: ClassVar[int] = 1

    order_id: str
    user_id: str
    email: str
    lines: list[OrderLine]
    total: Decimal
