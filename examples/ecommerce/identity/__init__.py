"""Identity: registers users; publishes UserRegisteredIntegrationEvent."""

from examples.ecommerce.identity.application import (
    PublishUserRegisteredIntegrationEventOnUserRegistered,
    RegisterUser,
)
from examples.ecommerce.identity.persistence import UserRepository, metadata
from examples.ecommerce.settings import broker_url, consumer_group, database_url
from tidings import BoundedContext

context = BoundedContext(
    "identity",
    database_url=database_url("identity"),
    broker_url=broker_url(),
    consumer_group=consumer_group("identity"),
)
context.subscribe(PublishUserRegisteredIntegrationEventOnUserRegistered(context.integration_events))
register_user = RegisterUser(lambda: UserRepository(context.session))
business_metadata = metadata

__all__ = ["business_metadata", "context", "register_user"]
