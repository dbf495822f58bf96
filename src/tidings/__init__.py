"""tidings: domain events, integration events, a transactional outbox, relay and inbox.

The names the articles use are importable from here::

    from tidings import (
        AggregateRoot, BoundedContext, DomainEvent, DomainEventHandler,
        DomainEventProducer, IntegrationEvent, IntegrationEventProducer, Query,
        QueryBus, QueryHandler, UseCase,
    )

Each name is imported on first use (PEP 562), so ``import tidings`` and ``tidings
--help`` do not pay for SQLAlchemy and pydantic until something needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Where each public name lives (tests/unit/test_public_api.py keeps it in step
# with __all__ and the imports for type checkers below).
_EXPORTS: dict[str, str] = {
    "AggregateRoot": "tidings.domain",
    "AsyncDomainEventProducer": "tidings.application",
    "AsyncIntegrationEventProducer": "tidings.application",
    "AsyncQueryBus": "tidings.application",
    "BoundedContext": "tidings.context",
    "CascadeDepthExceededError": "tidings.errors",
    "CloudEvent": "tidings.contracts",
    "ConfigurationError": "tidings.errors",
    "ContractError": "tidings.errors",
    "ContractRegistry": "tidings.contracts",
    "ContractValidationError": "tidings.errors",
    "DecodeError": "tidings.errors",
    "DomainEvent": "tidings.domain",
    "DomainEventHandler": "tidings.application",
    "DomainEventProducer": "tidings.application",
    "DuplicateContractError": "tidings.errors",
    "LimitExceededError": "tidings.errors",
    "IntegrationEvent": "tidings.contracts",
    "IntegrationEventHandler": "tidings.application",
    "IntegrationEventProducer": "tidings.application",
    "MessageTooLargeError": "tidings.errors",
    "MissingExtraError": "tidings.errors",
    "NoActiveTransactionError": "tidings.errors",
    "NoQueryHandlerError": "tidings.errors",
    "PublishedFromUseCaseError": "tidings.errors",
    "PublishedFromUseCaseWarning": "tidings.errors",
    "Query": "tidings.application",
    "QueryBus": "tidings.application",
    "QueryHandler": "tidings.application",
    "RetryPolicy": "tidings.application",
    "RoutingMismatchError": "tidings.errors",
    "SignatureError": "tidings.errors",
    "System": "tidings.system",
    "TidingsError": "tidings.errors",
    "TlsError": "tidings.errors",
    "UnhandledTypeError": "tidings.errors",
    "UnknownContractError": "tidings.errors",
    "UseCase": "tidings.application",
    "metadata": "tidings.persistence",
    "redact": "tidings.redaction",
}

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
    "LimitExceededError",
    "MessageTooLargeError",
    "MissingExtraError",
    "NoActiveTransactionError",
    "NoQueryHandlerError",
    "PublishedFromUseCaseError",
    "PublishedFromUseCaseWarning",
    "Query",
    "QueryBus",
    "QueryHandler",
    "RetryPolicy",
    "RoutingMismatchError",
    "SignatureError",
    "System",
    "TidingsError",
    "TlsError",
    "UnhandledTypeError",
    "UnknownContractError",
    "UseCase",
    "__version__",
    "metadata",
    "redact",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tidings' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
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
    from tidings.contracts import (
        CloudEvent,
        ContractRegistry,
        IntegrationEvent,
    )
    from tidings.domain import (
        AggregateRoot,
        DomainEvent,
    )
    from tidings.errors import (
        CascadeDepthExceededError,
        ConfigurationError,
        ContractError,
        ContractValidationError,
        DecodeError,
        DuplicateContractError,
        LimitExceededError,
        MessageTooLargeError,
        MissingExtraError,
        NoActiveTransactionError,
        NoQueryHandlerError,
        PublishedFromUseCaseError,
        PublishedFromUseCaseWarning,
        RoutingMismatchError,
        SignatureError,
        TidingsError,
        TlsError,
        UnhandledTypeError,
        UnknownContractError,
    )
    from tidings.persistence import metadata
    from tidings.redaction import redact
    from tidings.system import System
