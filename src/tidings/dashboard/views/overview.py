"""The overview: every context's outbox, relay, dead letters and consumer lag."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from tidings.dashboard.queries.overview import ContextOverview, context_overview
from tidings.dashboard.state import state_of
from tidings.dashboard.views.rendering import page

#: how often the page refreshes its table, in milliseconds
REFRESH_MS = 3000


async def overview(request: Request) -> Response:
    """The overview page; its table refreshes itself every few seconds."""
    return page(request, "overview.html", overviews=await _read(request), refresh_ms=REFRESH_MS)


async def overview_table(request: Request) -> Response:
    """The overview's table alone, which the page polls for."""
    return page(request, "_overview_table.html", overviews=await _read(request))


async def _read(request: Request) -> list[ContextOverview]:
    contexts = state_of(request).contexts.values()
    return list(await asyncio.gather(*(context_overview(c) for c in contexts)))
