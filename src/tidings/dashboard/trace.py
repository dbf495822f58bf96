"""Where ``tidings trace`` plugs into the dashboard: one function.

The trace view (the causal tree of a correlation or event id, from the durable causal
records of :mod:`tidings.causality`) shows when that package is importable; the
dashboard says "trace not available" otherwise. :func:`trace_html` is the only place
the dashboard touches it.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from tidings.context import BoundedContext


async def trace_html(contexts: Sequence[BoundedContext], identifier: str) -> str | None:
    """The causal trace of ``identifier`` as an HTML fragment, or None when
    :mod:`tidings.causality` is not installed (or has no dashboard rendering yet).

    The fragment is inserted as is: the renderer escapes what it draws.
    """
    try:
        causality = importlib.import_module("tidings.causality")
    except ModuleNotFoundError:
        return None
    render = getattr(causality, "trace_html", None)
    if render is None:
        return None
    html: str = await render(contexts, identifier)
    return html
