"""The event-flow map: which context publishes and consumes what, drawn from the code.

::

    from tidings.eventmap import build_map, to_mermaid

    print(to_mermaid(build_map(system.contexts)))

``tidings map TARGET... --format mermaid|dot|html|json`` is the command-line face.
"""

from tidings.eventmap.dot import to_dot
from tidings.eventmap.html import to_html, to_svg
from tidings.eventmap.mermaid import to_mermaid
from tidings.eventmap.model import (
    ContextMap,
    ContractNode,
    DomainFlow,
    EventMap,
    HandlerNode,
    build_map,
)

__all__ = [
    "ContextMap",
    "ContractNode",
    "DomainFlow",
    "EventMap",
    "HandlerNode",
    "build_map",
    "to_dot",
    "to_html",
    "to_mermaid",
    "to_svg",
]
