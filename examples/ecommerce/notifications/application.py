"""Sending the order confirmation email."""

from __future__ import annotations

from collections.abc import Callable

from examples.ecommerce.notifications.domain import Email
from examples.ecommerce.notifications.persistence import Mailbox
from examples.ecommerce.ordering.contracts import OrderConfirmedIntegrationEvent
from tidings import IntegrationEventHandler


class SendConfirmationEmailOnOrderConfirmed(IntegrationEventHandler):
    def __init__(self, mailbox: Callable[[], Mailbox]) -> None:
        self._mailbox = mailbox

    def handle(self, event: OrderConfirmedIntegrationEvent) -> None:
        lines = "\n".join(
            f"  {line.quantity} x {line.product_id} at {line.unit_price}" for line in event.lines
        )
        self._mailbox().send(
            Email(
                order_id=event.order_id,
                to=event.email,
                subject=f"Your order {event.order_id} is confirmed",
                body=f"Thank you! You ordered:\n{lines}\nTotal: {event.total}",
            )
        )
