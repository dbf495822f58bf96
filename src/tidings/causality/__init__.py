"""Causal records and ``tidings trace``: what a use case caused, in every context.

- :mod:`tidings.causality.records` writes the records (the relay and the consumer do).
- :func:`trace` joins the records of several contexts into the :class:`Trace` of one
  use case, from a correlation id or any event id; :func:`latest` gives the latest ones.
- :func:`as_json`, :func:`as_mermaid` and :func:`as_tree` show a trace; :func:`audit`
  checks that the traces of every use case account for every record;
  :func:`trace_html` draws one for the dashboard.

Loaded lazily: the relay and consumer import only the records module.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from tidings.causality.records import DEFAULT_CAUSAL_RETENTION, Outcome

_LAZY = {
    "Trace": "tidings.causality.tree",
    "Status": "tidings.causality.tree",
    "EventNode": "tidings.causality.tree",
    "Handling": "tidings.causality.tree",
    "trace": "tidings.causality.tree",
    "latest": "tidings.causality.tree",
    "as_json": "tidings.causality.render",
    "as_mermaid": "tidings.causality.render",
    "as_tree": "tidings.causality.render",
    "Audit": "tidings.causality.auditing",
    "audit": "tidings.causality.auditing",
    "trace_html": "tidings.causality.html",
}

__all__ = ["DEFAULT_CAUSAL_RETENTION", "Outcome", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tidings.causality' has no attribute {name!r}")
    return getattr(import_module(module), name)
