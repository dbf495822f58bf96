"""Ordering's use cases, domain event handlers and integration event handlers."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from examples.ecommerce.identity.contracts import UserRegisteredIntegrationEvent
from examples.ecommerce.ordering.contracts import OrderConfirmedIntegrationEvent, OrderLine
from examples.ecommerce.ordering.domain import (
    Buyer,
    Customer,
    Order,
    OrderConfirmed,
    OrderStartedDomainEvent,
)
from examples.ecommerce.ordering.persistence import OrderingRepository
from examples.ecommerce.payments.contracts import PaymentCompletedIntegrationEvent
from tidings import DomainEventHandler, IntegrationEventHandler, IntegrationEventProducer, UseCase

Repository = Callable[[], OrderingRepository]


class StartOrder(UseCase):
    def __init__(self, repository: Repository) -> None:
        self._repository = repository

    def execute(self, order_id: str, user_id: str, lines: list[tuple[str, int, Decimal]]) -> None:
        self._repository().add(Order.start(order_id, user_id, lines))


class ConfirmOrder(UseCase):
    def __init__(self, repository: Repository) -> None:
        self._repository = repository

    def execute(self, order_id: str) -> None:
        self._repository().order(order_id).confirm()


class CreateBuyerOnOrderStarted(DomainEventHandler):
    """Seed 001: the Buyer aggregate reacts to OrderStartedDomainEvent, same transaction."""

    def __init__(self, repository: Repository) -> None:
        self._repository = repository

    def handle(self, event: OrderStartedDomainEvent) -> None:
        repository = self._repository()
        if repository.buyer(event.user_id) is not None:
            return
        customer = repository.customer(event.user_id)
        if customer is None:
            raise LookupError(
                f"user {event.user_id} is unknown to Ordering yet (Identity's event not arrived)"
            )
        repository.add(Buyer(event.user_id, customer.name, customer.email))


class PublishOrderConfirmedIntegrationEventOnOrderConfirmed(DomainEventHandler):
    publishes = (OrderConfirmedIntegrationEvent,)

    def __init__(self, repository: Repository, producer: IntegrationEventProducer) -> None:
        self._repository = repository
        self._producer = producer

    def handle(self, event: OrderConfirmed) -> None:
        repository = self._repository()
        order = repository.order(event.order_id)
        buyer = repository.buyer(order.user_id)
        self._producer.publish(
            OrderConfirmedIntegrationEvent(
                order_id=order.id,
                user_id=order.user_id,
                email=buyer.email if buyer else "",
                lines=[
                    OrderLine(product_id=p, quantity=q, unit_price=price)
                    for p, q, price in order.lines
                ],
                total=order.total,
            )
        )


class CopyCustomerOnUserRegistered(IntegrationEventHandler):
    def __init__(self, repository: Repository) -> None:
        self._repository = repository

    def handle(self, event: UserRegisteredIntegrationEvent) -> None:
        repository = self._repository()
        customer = repository.customer(event.user_id)
        if customer is None:
            repository.add(Customer(event.user_id, event.name, event.email))
        else:
            customer.name, customer.email = event.name, event.email


class MarkOrderPaidOnPaymentCompleted(IntegrationEventHandler):
    def __init__(self, repository: Repository) -> None:
        self._repository = repository

    def handle(self, event: PaymentCompletedIntegrationEvent) -> None:
        self._repository().order(event.order_id).mark_paid()
