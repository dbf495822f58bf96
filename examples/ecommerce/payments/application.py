"""Payments' handlers."""

from __future__ import annotations

from collections.abc import Callable

from examples.ecommerce.ordering.contracts import OrderConfirmedIntegrationEvent
from examples.ecommerce.payments.contracts import PaymentCompletedIntegrationEvent
from examples.ecommerce.payments.domain import Payment, PaymentCaptured
from examples.ecommerce.payments.persistence import PaymentRepository
from tidings import DomainEventHandler, IntegrationEventHandler, IntegrationEventProducer

Repository = Callable[[], PaymentRepository]


class CapturePaymentOnOrderConfirmed(IntegrationEventHandler):
    def __init__(self, repository: Repository) -> None:
        self._repository = repository

    def handle(self, event: OrderConfirmedIntegrationEvent) -> None:
        repository = self._repository()
        if repository.find(event.order_id) is None:
            repository.add(Payment.capture(event.order_id, event.total))


class PublishPaymentCompletedOnPaymentCaptured(DomainEventHandler):
    publishes = (PaymentCompletedIntegrationEvent,)

    def __init__(self, producer: IntegrationEventProducer) -> None:
        self._producer = producer

    def handle(self, event: PaymentCaptured) -> None:
        self._producer.publish(
            PaymentCompletedIntegrationEvent(order_id=event.order_id, amount=event.amount)
        )
