"""What a context publishes and consumes, read from its handlers without running them.

A handler that publishes integration events says which, as a class attribute::

    class PublishUpdatedProductIntegrationEventOnProductPutOnSale(DomainEventHandler):
        publishes = (ProductUpdatedIntegrationEvent,)

What a context consumes comes from its integration event handlers' ``handle``
annotations. The commands that describe a system (``tidings map``, ``tidings contracts
list``, ``tidings asyncapi``) read both from here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from tidings.application.introspection import handled_types, handler_id
from tidings.contracts.integration_event import IntegrationEvent
from tidings.errors import ConfigurationError

if TYPE_CHECKING:
    from tidings.context import BoundedContext

ContractHandlers = dict[type[IntegrationEvent], tuple[str, ...]]


def declared_publications(handler: object) -> tuple[type[IntegrationEvent], ...]:
    """The integration event classes ``handler.publishes`` names (empty if it names none).

    A name that is not an IntegrationEvent subclass is a :class:`ConfigurationError`.
    """
    declared: Any = getattr(handler, "publishes", ())
    if isinstance(declared, type):
        declared = (declared,)
    contracts = tuple(declared)
    for contract in contracts:
        if not (isinstance(contract, type) and issubclass(contract, IntegrationEvent)):
            raise ConfigurationError(
                f"{handler_id(handler)}.publishes names {contract!r}; list the "
                "IntegrationEvent classes the handler publishes, e.g. "
                "publishes = (ProductUpdatedIntegrationEvent,)"
            )
    return contracts


def published_contracts(context: BoundedContext) -> ContractHandlers:
    """Each contract the context's handlers declare they publish, with those handlers."""
    handlers = [s.handler for s in context.subscriptions] + list(context.integration_handlers)
    return _by_contract((h, declared_publications(h)) for h in handlers)


def consumed_contracts(context: BoundedContext) -> ContractHandlers:
    """Each contract the context's integration event handlers handle, with those handlers."""
    return _by_contract(
        (h, handled_types(h, IntegrationEvent, "IntegrationEventHandler"))
        for h in context.integration_handlers
    )


def _by_contract(
    pairs: Iterable[tuple[object, tuple[type[IntegrationEvent], ...]]],
) -> ContractHandlers:
    found: dict[type[IntegrationEvent], list[str]] = {}
    for handler, contracts in pairs:
        for contract in contracts:
            names = found.setdefault(contract, [])
            if handler_id(handler) not in names:
                names.append(handler_id(handler))
    return {contract: tuple(names) for contract, names in found.items()}
