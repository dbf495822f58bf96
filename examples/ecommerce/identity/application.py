"""Identity's use cases and handlers."""

from __future__ import annotations

from collections.abc import Callable

from examples.ecommerce.identity.contracts import UserRegisteredIntegrationEvent
from examples.ecommerce.identity.domain import User, UserRegistered
from examples.ecommerce.identity.persistence import UserRepository
from tidings import DomainEventHandler, IntegrationEventProducer, UseCase


class RegisterUser(UseCase):
    """Events recorded on the aggregate are dispatched when the transaction commits."""

    def __init__(self, repository: Callable[[], UserRepository]) -> None:
        self._repository = repository

    def execute(self, user_id: str, name: str, email: str) -> None:
        self._repository().add(User.register(user_id, name, email))


class PublishUserRegisteredIntegrationEventOnUserRegistered(DomainEventHandler):
    publishes = (UserRegisteredIntegrationEvent,)

    def __init__(self, integration_event_producer: IntegrationEventProducer) -> None:
        self._integration_event_producer = integration_event_producer

    def handle(self, event: UserRegistered) -> None:
        self._integration_event_producer.publish(
            UserRegisteredIntegrationEvent(
                user_id=event.user_id, name=event.name, email=event.email
            )
        )
