"""What Payments tells other contexts."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from tidings import IntegrationEvent


class PaymentCompletedIntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = "payments.payment.completed"
    event_version: ClassVar[int] = 1

    order_id: str
    amount: Decimal
