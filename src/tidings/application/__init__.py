"""The application layer: use cases, handlers, buses and producers."""

from tidings.application.integration_producers import (
    AsyncIntegrationEventProducer,
    IntegrationEventProducer,
)
from tidings.application.producers import AsyncDomainEventProducer, DomainEventProducer
from tidings.application.query_bus import AsyncQueryBus, QueryBus
from tidings.application.retry import RetryPolicy
from tidings.application.roles import (
    DomainEventHandler,
    IntegrationEventHandler,
    Query,
    QueryHandler,
    UseCase,
)

__all__ = [
    "AsyncDomainEventProducer",
    "AsyncIntegrationEventProducer",
    "AsyncQueryBus",
    "DomainEventHandler",
    "DomainEventProducer",
    "IntegrationEventHandler",
    "IntegrationEventProducer",
    "Query",
    "QueryBus",
    "QueryHandler",
    "RetryPolicy",
    "UseCase",
]
