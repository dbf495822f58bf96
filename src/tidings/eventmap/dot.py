"""The map as Graphviz DOT: a cluster per context, contracts between them."""

from __future__ import annotations

from tidings.eventmap.graph import Node, NodeKind, to_graph
from tidings.eventmap.model import EventMap

_STYLES = {
    NodeKind.DOMAIN_EVENT: 'shape=ellipse, style=filled, fillcolor="#e8f4fd"',
    NodeKind.HANDLER: "shape=box",
    NodeKind.CONTRACT: 'shape=hexagon, style=filled, fillcolor="#fff3cd"',
}


def to_dot(event_map: EventMap) -> str:
    """DOT text: ``tidings map ... --format dot | dot -Tsvg > map.svg``."""
    graph = to_graph(event_map)
    lines = ["digraph tidings {", "  rankdir=LR;", '  node [fontname="Helvetica"];']
    for index, context in enumerate(graph.contexts):
        lines.append(f"  subgraph cluster_{index} {{")
        lines.append(f"    label={_quote(context)};")
        lines.extend(f"    {_node(n)}" for n in graph.nodes if n.context == context)
        lines.append("  }")
    lines.extend(f"  {_node(n)}" for n in graph.nodes if n.context is None)
    lines.extend(f"  {e.source} -> {e.target};" for e in graph.edges)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _node(node: Node) -> str:
    return f"{node.node_id} [label={_quote(node.label)}, {_STYLES[node.kind]}];"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
