"""The map as one self-contained HTML page: an SVG drawing and the contract table.

No script and nothing fetched: the page opens from a file, offline, anywhere. Each
context is a band with its domain events on the left and its handlers in the middle;
the contracts stand in a column on the right, with arrows from the handlers that
publish them and back to the handlers that consume them.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from tidings.eventmap.graph import Graph, Node, NodeKind, to_graph
from tidings.eventmap.mermaid import to_mermaid
from tidings.eventmap.model import EventMap

_ROW = 34
_BOX_HEIGHT = 24
_BAND_HEADER = 30
_BAND_GAP = 16
_COLUMNS = {  # x and width of each column
    NodeKind.DOMAIN_EVENT: (30, 230),
    NodeKind.HANDLER: (300, 360),
    NodeKind.CONTRACT: (760, 280),
}
_WIDTH = 1070
_FILL = {
    NodeKind.DOMAIN_EVENT: "#e8f4fd",
    NodeKind.HANDLER: "#ffffff",
    NodeKind.CONTRACT: "#fff3cd",
}


@dataclass(frozen=True, slots=True)
class _Box:
    x: float
    y: float
    width: float


def to_html(event_map: EventMap, *, title: str = "tidings event-flow map") -> str:
    """A complete HTML document drawing ``event_map``."""
    svg = to_svg(event_map)
    rows = "".join(
        "<tr>"
        f"<td><code>{escape(c.event_type)}</code></td><td>{c.version}</td>"
        f"<td>{escape(c.class_name)}</td>"
        f"<td>{escape(', '.join(c.producers) or '—')}</td>"
        f"<td>{escape(', '.join(c.consumers) or '—')}</td>"
        "</tr>"
        for c in event_map.contracts
    )
    warnings = "".join(f"<li>{escape(w)}</li>" for w in event_map.warnings)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escape(title)}</title>
<style>
body {{ font-family: Helvetica, Arial, sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; margin-top: 12px; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; font-size: 14px; }}
th {{ background: #f4f4f4; }}
.legend span {{ display: inline-block; padding: 2px 8px; margin-right: 8px;
  border: 1px solid #888; border-radius: 4px; font-size: 13px; }}
pre {{ background: #f7f7f7; padding: 12px; overflow-x: auto; }}
</style>
</head>
<body>
<h1>{escape(title)}</h1>
<p class="legend"><span style="background:{_FILL[NodeKind.DOMAIN_EVENT]}">domain event</span>
<span style="background:{_FILL[NodeKind.HANDLER]}">handler</span>
<span style="background:{_FILL[NodeKind.CONTRACT]}">integration event contract</span></p>
{svg}
<h2>Contracts</h2>
<table>
<tr><th>type</th><th>version</th><th>class</th><th>published by</th><th>consumed by</th></tr>
{rows}
</table>
{f"<h2>Warnings</h2><ul>{warnings}</ul>" if warnings else ""}
<details><summary>Mermaid source</summary><pre>{escape(to_mermaid(event_map))}</pre></details>
</body>
</html>
"""


def to_svg(event_map: EventMap) -> str:
    """The drawing alone, as an inline ``<svg>`` element (the dashboard embeds it)."""
    return _svg(to_graph(event_map))


def _svg(graph: Graph) -> str:
    boxes: dict[str, _Box] = {}
    parts: list[str] = []
    y = 10.0
    for context in graph.contexts:
        members = [n for n in graph.nodes if n.context == context]
        events = [n for n in members if n.kind is NodeKind.DOMAIN_EVENT]
        handlers = [n for n in members if n.kind is NodeKind.HANDLER]
        height = _BAND_HEADER + max(len(events), len(handlers), 1) * _ROW
        parts.append(
            f'<rect x="10" y="{y}" width="{_COLUMNS[NodeKind.HANDLER][0] + 380}" '
            f'height="{height}" rx="8" fill="#fafafa" stroke="#bbb"/>'
            f'<text x="20" y="{y + 20}" font-weight="bold" font-size="15">'
            f"{escape(context)}</text>"
        )
        for column in (events, handlers):
            for row, node in enumerate(column):
                boxes[node.node_id] = _place(node, y + _BAND_HEADER + row * _ROW)
        y += height + _BAND_GAP
    # Each contract as near as it can be to the handlers that publish it, without overlap.
    wanted: dict[str, float] = {}
    for node in graph.nodes:
        if node.kind is NodeKind.CONTRACT:
            near = [boxes[e.source].y for e in graph.edges if e.target == node.node_id]
            near = near or [boxes[e.target].y for e in graph.edges if e.source == node.node_id]
            wanted[node.node_id] = sum(near) / len(near) if near else 10.0
    contracts = sorted(
        (n for n in graph.nodes if n.kind is NodeKind.CONTRACT), key=lambda n: wanted[n.node_id]
    )
    lowest = 10.0 - _ROW
    for node in contracts:
        lowest = max(wanted[node.node_id], lowest + _ROW)
        boxes[node.node_id] = _place(node, lowest)
    total_height = max(y, lowest + _ROW) + 10
    edges = [_edge(boxes[e.source], boxes[e.target]) for e in graph.edges]
    nodes = [_box(node, boxes[node.node_id]) for node in graph.nodes]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{total_height:.0f}" '
        f'viewBox="0 0 {_WIDTH} {total_height:.0f}" font-family="Helvetica, Arial, sans-serif">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#666"/></marker></defs>'
        + "".join(parts)
        + "".join(edges)
        + "".join(nodes)
        + "</svg>"
    )


def _place(node: Node, y: float) -> _Box:
    x, width = _COLUMNS[node.kind]
    return _Box(x, y, width)


def _box(node: Node, box: _Box) -> str:
    radius = 12 if node.kind is NodeKind.DOMAIN_EVENT else 4
    label = node.label if len(node.label) * 6.6 < box.width - 10 else _shorten(node.label, box)
    return (
        f"<g><title>{escape(node.label)}</title>"
        f'<rect x="{box.x}" y="{box.y:.1f}" width="{box.width}" height="{_BOX_HEIGHT}" '
        f'rx="{radius}" fill="{_FILL[node.kind]}" stroke="#666"/>'
        f'<text x="{box.x + 6}" y="{box.y + 16:.1f}" font-size="12">{escape(label)}</text></g>'
    )


def _shorten(label: str, box: _Box) -> str:
    keep = max(int((box.width - 10) / 6.6) - 1, 4)
    return label[:keep] + "…"


def _edge(source: _Box, target: _Box) -> str:
    mid_y_source = source.y + _BOX_HEIGHT / 2
    mid_y_target = target.y + _BOX_HEIGHT / 2
    if target.x > source.x:  # left to right: leave on the right, arrive on the left
        x1, x2 = source.x + source.width, target.x
    else:  # a contract back to a consuming handler: leave on the left, arrive on the right
        x1, x2 = source.x, target.x + target.width
    bend = abs(x2 - x1) / 2
    c1 = x1 + bend if x2 > x1 else x1 - bend
    c2 = x2 - bend if x2 > x1 else x2 + bend
    return (
        f'<path d="M {x1} {mid_y_source:.1f} C {c1:.1f} {mid_y_source:.1f}, '
        f'{c2:.1f} {mid_y_target:.1f}, {x2} {mid_y_target:.1f}" fill="none" '
        'stroke="#888" stroke-width="1.2" marker-end="url(#arrow)"/>'
    )
