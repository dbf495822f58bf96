"""Notifications publishes nothing; it reacts to Ordering's contract."""

from examples.ecommerce.ordering.contracts import OrderConfirmedIntegrationEvent

__all__ = ["OrderConfirmedIntegrationEvent"]
