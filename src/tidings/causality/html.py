"""A trace as an HTML fragment, for the dashboard's lookup page."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING

from rich.console import Console

from tidings.causality.render import as_mermaid, as_tree
from tidings.causality.tree import trace
from tidings.errors import TraceNotFoundError

if TYPE_CHECKING:
    from tidings.context import BoundedContext


async def trace_html(contexts: Sequence[BoundedContext], identifier: str) -> str:
    """The causal tree of the use case ``identifier`` belongs to, escaped, as HTML.

    An id no context has recorded gives a short explanation instead of an error.
    """
    try:
        found = await asyncio.to_thread(trace, list(contexts), identifier)
    except TraceNotFoundError as error:
        return f'<p class="trace-missing">{escape(str(error))}</p>'
    console = Console(file=io.StringIO(), width=110, color_system=None, force_terminal=False)
    console.print(as_tree(found))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return (
        f'<pre class="trace-tree">{escape(text)}</pre>'
        f"<details><summary>Mermaid sequence diagram</summary>"
        f"<pre>{escape(as_mermaid(found))}</pre></details>"
    )
