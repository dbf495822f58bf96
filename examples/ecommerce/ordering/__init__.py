"""Ordering: orders and buyers; publishes OrderConfirmedIntegrationEvent."""

from examples.ecommerce.ordering.application import (
    ConfirmOrder,
    CopyCustomerOnUserRegistered,
    CreateBuyerOnOrderStarted,
    MarkOrderPaidOnPaymentCompleted,
    PublishOrderConfirmedIntegrationEventOnOrderConfirmed,
    StartOrder,
)
from examples.ecommerce.ordering.persistence import OrderingRepository, metadata
from examples.ecommerce.settings import broker_url, consumer_group, database_url
from tidings import BoundedContext

context = BoundedContext(
    "ordering",
    database_url=database_url("ordering"),
    broker_url=broker_url(),
    consumer_group=consumer_group("ordering"),
)


def _repository() -> OrderingRepository:
    return OrderingRepository(context.session)


context.subscribe(CreateBuyerOnOrderStarted(_repository))
context.subscribe(
    PublishOrderConfirmedIntegrationEventOnOrderConfirmed(_repository, context.integration_events)
)
context.subscribe(CopyCustomerOnUserRegistered(_repository))
context.subscribe(MarkOrderPaidOnPaymentCompleted(_repository))
start_order = StartOrder(_repository)
confirm_order = ConfirmOrder(_repository)
business_metadata = metadata

__all__ = ["business_metadata", "confirm_order", "context", "start_order"]
