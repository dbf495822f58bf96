"""The map as data: contexts, their domain event flows, and the contracts between them.

Everything comes from the code, nothing from running it: domain event handlers from each
context's subscriptions, the contracts a handler publishes from its ``publishes``
declaration, and the contracts a context consumes from its integration event handlers'
``handle`` annotations.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tidings.application.event_flow import consumed_contracts, declared_publications
from tidings.application.introspection import handled_types, handler_id
from tidings.contracts.integration_event import IntegrationEvent

if TYPE_CHECKING:
    from tidings.context import BoundedContext


@dataclass(frozen=True, slots=True)
class HandlerNode:
    """One handler: its id (module.Class), short name, and the contracts it publishes."""

    handler_id: str
    name: str
    publishes: tuple[str, ...]  # contract keys, "type v<version>"
    after_commit: bool = False


@dataclass(frozen=True, slots=True)
class DomainFlow:
    """A domain event of a context and the handlers it runs there."""

    event: str
    handlers: tuple[HandlerNode, ...]


@dataclass(frozen=True, slots=True)
class ContextMap:
    """What one context does with events."""

    name: str
    domain_flows: tuple[DomainFlow, ...]
    consumers: tuple[tuple[str, HandlerNode], ...]  # (contract key, handler)
    publishes: tuple[str, ...]
    consumes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ContractNode:
    """One integration event contract, who publishes it and who consumes it."""

    key: str
    event_type: str
    version: int
    class_name: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EventMap:
    """The whole map; ``to_json()`` is the documented machine-readable shape."""

    contexts: tuple[ContextMap, ...]
    contracts: tuple[ContractNode, ...]
    warnings: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """Nodes and edges: contexts, contracts, handlers and who-calls-what."""
        return {
            "contexts": [
                {
                    "name": c.name,
                    "publishes": list(c.publishes),
                    "consumes": list(c.consumes),
                    "domain_events": [
                        {
                            "event": flow.event,
                            "handlers": [_handler_json(h) for h in flow.handlers],
                        }
                        for flow in c.domain_flows
                    ],
                    "integration_handlers": [
                        {"contract": key, **_handler_json(h)} for key, h in c.consumers
                    ],
                }
                for c in self.contexts
            ],
            "contracts": [
                {
                    "key": n.key,
                    "type": n.event_type,
                    "version": n.version,
                    "class": n.class_name,
                    "producers": list(n.producers),
                    "consumers": list(n.consumers),
                }
                for n in self.contracts
            ],
            "warnings": list(self.warnings),
        }


def contract_key(contract: type[IntegrationEvent]) -> str:
    """How the map names a contract: ``type v<version>``."""
    return f"{contract.event_type} v{contract.event_version}"


def build_map(contexts: Iterable[BoundedContext]) -> EventMap:
    """The event-flow map of ``contexts``, in the order given."""
    context_maps: list[ContextMap] = []
    classes: dict[str, type[IntegrationEvent]] = {}
    producers: dict[str, list[str]] = {}
    consumers: dict[str, list[str]] = {}
    for context in contexts:
        context_map = _context_map(context, classes)
        context_maps.append(context_map)
        for key in context_map.publishes:
            producers.setdefault(key, []).append(context.name)
        for key in context_map.consumes:
            consumers.setdefault(key, []).append(context.name)
    contracts = tuple(
        ContractNode(
            key=key,
            event_type=classes[key].event_type,
            version=classes[key].event_version,
            class_name=classes[key].__name__,
            producers=tuple(producers.get(key, ())),
            consumers=tuple(consumers.get(key, ())),
        )
        for key in sorted(classes)
    )
    warnings = tuple(
        f"{n.key} is consumed by {', '.join(n.consumers)} but no context shown declares "
        "that it publishes it (publishes = (...) on the publishing handler)"
        for n in contracts
        if n.consumers and not n.producers
    )
    return EventMap(tuple(context_maps), contracts, warnings)


def _context_map(context: BoundedContext, classes: dict[str, type[IntegrationEvent]]) -> ContextMap:
    flows: dict[str, list[HandlerNode]] = {}
    published: list[str] = []
    for subscription in context.subscriptions:
        node = _handler_node(subscription.handler, classes, after_commit=subscription.after_commit)
        published.extend(k for k in node.publishes if k not in published)
        for event_type in subscription.event_types:
            flows.setdefault(event_type.__name__, []).append(node)
    consuming: list[tuple[str, HandlerNode]] = []
    consumed: list[str] = []
    for contract, _ in consumed_contracts(context).items():
        classes.setdefault(contract_key(contract), contract)
        consumed.append(contract_key(contract))
    for handler in context.integration_handlers:
        node = _handler_node(handler, classes)
        published.extend(k for k in node.publishes if k not in published)
        for contract in handled_types(handler, IntegrationEvent, "IntegrationEventHandler"):
            consuming.append((contract_key(contract), node))
    return ContextMap(
        name=context.name,
        domain_flows=tuple(DomainFlow(event, tuple(nodes)) for event, nodes in flows.items()),
        consumers=tuple(consuming),
        publishes=tuple(published),
        consumes=tuple(consumed),
    )


def _handler_node(
    handler: object, classes: dict[str, type[IntegrationEvent]], *, after_commit: bool = False
) -> HandlerNode:
    keys = []
    for contract in declared_publications(handler):
        classes.setdefault(contract_key(contract), contract)
        keys.append(contract_key(contract))
    return HandlerNode(handler_id(handler), type(handler).__name__, tuple(keys), after_commit)


def _handler_json(handler: HandlerNode) -> dict[str, Any]:
    return {
        "handler": handler.handler_id,
        "name": handler.name,
        "publishes": list(handler.publishes),
        "after_commit": handler.after_commit,
    }
