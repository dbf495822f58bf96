"""The map as a Mermaid flowchart: a subgraph per context, contracts between them."""

from __future__ import annotations

from tidings.eventmap.graph import Node, NodeKind, to_graph
from tidings.eventmap.model import EventMap

_SHAPES = {
    NodeKind.DOMAIN_EVENT: ('(["', '"])'),
    NodeKind.HANDLER: ('["', '"]'),
    NodeKind.CONTRACT: ('{{"', '"}}'),
}


def to_mermaid(event_map: EventMap) -> str:
    """Mermaid ``flowchart LR`` text; paste it into any Mermaid renderer."""
    graph = to_graph(event_map)
    lines = ["flowchart LR"]
    for context in graph.contexts:
        lines.append(f'  subgraph {_subgraph_id(context)}["{_escape(context)}"]')
        lines.extend(f"    {_node(n)}" for n in graph.nodes if n.context == context)
        lines.append("  end")
    lines.extend(f"  {_node(n)}" for n in graph.nodes if n.context is None)
    lines.extend(f"  {e.source} --> {e.target}" for e in graph.edges)
    lines.append("  classDef contract fill:#fff3cd,stroke:#b58900")
    lines.append("  classDef domain fill:#e8f4fd,stroke:#268bd2")
    contracts = [n.node_id for n in graph.nodes if n.kind is NodeKind.CONTRACT]
    events = [n.node_id for n in graph.nodes if n.kind is NodeKind.DOMAIN_EVENT]
    if contracts:
        lines.append(f"  class {','.join(contracts)} contract")
    if events:
        lines.append(f"  class {','.join(events)} domain")
    return "\n".join(lines) + "\n"


def _node(node: Node) -> str:
    opening, closing = _SHAPES[node.kind]
    return f"{node.node_id}{opening}{_escape(node.label)}{closing}"


def _subgraph_id(context: str) -> str:
    return "ctx_" + "".join(ch if ch.isalnum() else "_" for ch in context)


def _escape(text: str) -> str:
    return text.replace('"', "#quot;")
