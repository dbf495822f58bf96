"""Payments: captures confirmed orders; publishes PaymentCompletedIntegrationEvent."""

from examples.ecommerce.payments.application import (
    CapturePaymentOnOrderConfirmed,
    PublishPaymentCompletedOnPaymentCaptured,
)
from examples.ecommerce.payments.persistence import PaymentRepository, metadata
from examples.ecommerce.settings import broker_url, consumer_group, database_url
from tidings import BoundedContext

context = BoundedContext(
    "payments",
    database_url=database_url("payments"),
    broker_url=broker_url(),
    consumer_group=consumer_group("payments"),
)
context.subscribe(CapturePaymentOnOrderConfirmed(lambda: PaymentRepository(context.session)))
context.subscribe(PublishPaymentCompletedOnPaymentCaptured(context.integration_events))
business_metadata = metadata

__all__ = ["business_metadata", "context"]
