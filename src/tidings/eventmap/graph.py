"""The map as a graph of nodes and edges, which every drawing format renders."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tidings.eventmap.model import EventMap


class NodeKind(StrEnum):
    """What a node stands for; the drawings give each kind its own shape."""

    DOMAIN_EVENT = "domain_event"
    HANDLER = "handler"
    CONTRACT = "contract"


@dataclass(frozen=True, slots=True)
class Node:
    """A node with an identifier safe in Mermaid and DOT (letters, digits, ``_``)."""

    node_id: str
    label: str
    kind: NodeKind
    context: str | None  # None for contracts, which live between contexts


@dataclass(frozen=True, slots=True)
class Edge:
    """``source`` leads to ``target``: an event runs a handler, a handler publishes..."""

    source: str
    target: str


@dataclass(frozen=True, slots=True)
class Graph:
    """Nodes in drawing order (contexts as given, then contracts) and their edges."""

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    contexts: tuple[str, ...]


def to_graph(event_map: EventMap) -> Graph:
    """Flatten the map: one node per domain event and handler of each context, and per
    contract; edges from events to handlers, handlers to what they publish, and
    contracts to the handlers that consume them."""
    nodes: list[Node] = []
    edges: list[Edge] = []
    ids: dict[tuple[str, str, str], str] = {}

    def node(kind: NodeKind, context: str | None, name: str, label: str) -> str:
        key = (kind.value, context or "", name)
        if key not in ids:
            ids[key] = f"n{len(ids) + 1}"
            nodes.append(Node(ids[key], label, kind, context))
        return ids[key]

    contract_ids = {
        contract.key: node(NodeKind.CONTRACT, None, contract.key, contract.key)
        for contract in event_map.contracts
    }
    for context in event_map.contexts:
        for flow in context.domain_flows:
            event_id = node(NodeKind.DOMAIN_EVENT, context.name, flow.event, flow.event)
            for handler in flow.handlers:
                label = handler.name + (" (after commit)" if handler.after_commit else "")
                handler_node = node(NodeKind.HANDLER, context.name, handler.handler_id, label)
                edges.append(Edge(event_id, handler_node))
                edges.extend(Edge(handler_node, contract_ids[key]) for key in handler.publishes)
        for key, handler in context.consumers:
            handler_node = node(NodeKind.HANDLER, context.name, handler.handler_id, handler.name)
            edges.append(Edge(contract_ids[key], handler_node))
            edges.extend(Edge(handler_node, contract_ids[k]) for k in handler.publishes)
    # Contracts first in the list so the drawings place them between the contexts.
    ordered = [n for n in nodes if n.kind is NodeKind.CONTRACT] + [
        n for n in nodes if n.kind is not NodeKind.CONTRACT
    ]
    unique_edges = tuple(dict.fromkeys(edges))
    return Graph(tuple(ordered), unique_edges, tuple(c.name for c in event_map.contexts))
