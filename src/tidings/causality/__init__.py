"""Causal records and ``tidings trace``: what a use case caused, in every context.

:mod:`tidings.causality.records` writes the records (relay and consumer);
:mod:`tidings.causality.tree` joins the records of several contexts into one causal tree.
"""

from tidings.causality.records import DEFAULT_CAUSAL_RETENTION, Outcome

__all__ = ["DEFAULT_CAUSAL_RETENTION", "Outcome"]
