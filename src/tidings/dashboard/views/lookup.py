"""Event lookup by event id or correlation id, with the trace and the event-flow map."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from tidings.dashboard.queries.lookup import look_up
from tidings.dashboard.state import state_of
from tidings.dashboard.trace import trace_html
from tidings.dashboard.views.event_map import map_svg
from tidings.dashboard.views.rendering import page


async def lookup(request: Request) -> Response:
    """Search form; with ``?id=`` the outbox, inbox and dead-letter rows that match."""
    identifier = request.query_params.get("id", "").strip()
    contexts = list(state_of(request).contexts.values())
    found = trace = None
    if identifier:
        found = await look_up(contexts, identifier)
        trace = await trace_html(contexts, identifier)
    return page(
        request,
        "lookup.html",
        identifier=identifier,
        found=found,
        trace=trace,
        svg=map_svg(request) if found is not None and found.found else None,
    )
