"""tidings: domain events, integration events, a transactional outbox, relay and inbox.

The names the articles use are importable from here::

    from tidings import (
        AggregateRoot, BoundedContext, DomainEvent, DomainEventHandler,
        DomainEventProducer, IntegrationEvent, IntegrationEventProducer, Query,
        QueryBus, QueryHandler, UseCase,
    )
"""

from tidings.application import (
    AsyncDomainEventProducer,
    AsyncIntegrationEventProducer,
    AsyncQueryBus,
    DomainEventHandler,
    DomainEventProducer,
    IntegrationEventHandler,
    IntegrationEventProducer,
    Query,
    QueryBus,
    QueryHandler,
    RetryPolicy,
    UseCase,
)
from tidings.context import BoundedContext
from tidings.contracts import CloudEvent, ContractRegistry, IntegrationEvent
from tidings.domain import AggregateRoot, DomainEvent
from tidings.errors import (
    CascadeDepthExceededError,
    ConfigurationError,
    ContractError,
    ContractValidationError,
    DecodeError,
    DuplicateContractError,
    MessageTooLargeError,
    MissingExtraError,
    NoActiveTransactionError,
    NoQueryHandlerError,
    TidingsError,
    TlsError,
    UnknownContractError,
)
from tidings.persistence import metadata
from tidings.redaction import redact
from tidings.system import System

__version__ = "0.1.0"

__all__ = [
    "AggregateRoot",
    "AsyncDomainEventProducer",
    "AsyncIntegrationEventProducer",
    "AsyncQueryBus",
    "BoundedContext",
    "CascadeDepthExceededError",
    "CloudEvent",
    "ConfigurationError",
    "ContractError",
    "ContractRegistry",
    "ContractValidationError",
    "DecodeError",
    "DomainEvent",
    "DomainEventHandler",
    "DomainEventProducer",
    "DuplicateContractError",
    "IntegrationEvent",
    "IntegrationEventHandler",
    "IntegrationEventProducer",
    "MessageTooLargeError",
    "MissingExtraError",
    "NoActiveTransactionError",
    "NoQueryHandlerError",
    "Query",
    "QueryBus",
    "QueryHandler",
    "RetryPolicy",
    "System",
    "TidingsError",
    "TlsError",
    "UnknownContractError",
    "UseCase",
    "__version__",
    "metadata",
    "redact",
]
