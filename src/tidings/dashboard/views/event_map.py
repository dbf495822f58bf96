"""The event-flow map of the dashboard's contexts, drawn as by ``tidings map``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from tidings.dashboard.state import state_of
from tidings.dashboard.views.rendering import page
from tidings.eventmap import build_map, to_svg


def map_svg(request: Request) -> str:
    """The map's SVG, drawn once per app: it comes from the code, which does not change."""
    state = state_of(request)
    if state.map_svg is None:
        state.map_svg = to_svg(build_map(state.contexts.values()))
    return state.map_svg


async def event_map(request: Request) -> Response:
    event_map = build_map(state_of(request).contexts.values())
    return page(request, "map.html", svg=map_svg(request), event_map=event_map)
