"""Notifications: one confirmation email per confirmed order."""

from examples.ecommerce.notifications.application import SendConfirmationEmailOnOrderConfirmed
from examples.ecommerce.notifications.persistence import Mailbox, metadata
from examples.ecommerce.settings import broker_url, consumer_group, database_url
from tidings import BoundedContext

context = BoundedContext(
    "notifications",
    database_url=database_url("notifications"),
    broker_url=broker_url(),
    consumer_group=consumer_group("notifications"),
)
context.subscribe(SendConfirmationEmailOnOrderConfirmed(lambda: Mailbox(context.session)))
business_metadata = metadata

__all__ = ["business_metadata", "context"]
