"""Checking that the traces of a run account for every record: no missing links.

Used by the demo's convergence report and its acceptance test: every use case recorded
in the contexts' databases must have a complete trace, and the traces together must hold
exactly the events the contexts published and the handlings they recorded.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select

from tidings.causality.reading import Records, read_flow
from tidings.causality.records import Outcome
from tidings.causality.tree import Status, Trace, build
from tidings.context import BoundedContext
from tidings.persistence.tables import handled_records, outbox, published_records


@dataclass(slots=True)
class Audit:
    """What the traces of every use case found, against what the databases hold."""

    traces: list[Trace]
    recorded_events: set[str] = field(default_factory=set)
    recorded_handlings: set[tuple[str, str, str]] = field(default_factory=set)
    traced_events: set[str] = field(default_factory=set)
    traced_handlings: set[tuple[str, str, str]] = field(default_factory=set)

    @property
    def incomplete(self) -> list[Trace]:
        return [t for t in self.traces if t.status is not Status.COMPLETE or t.orphans]

    @property
    def missing(self) -> int:
        """Events and handlings in a database but in no trace."""
        return len(self.recorded_events - self.traced_events) + len(
            self.recorded_handlings - self.traced_handlings
        )

    @property
    def invented(self) -> int:
        """Events and handlings in a trace but in no database."""
        return len(self.traced_events - self.recorded_events) + len(
            self.traced_handlings - self.recorded_handlings
        )


def audit(contexts: Sequence[BoundedContext]) -> Audit:
    """Trace every use case recorded in ``contexts`` and compare with their tables."""
    contexts = list(contexts)
    everything = read_flow(contexts, None, set(), everything=True)
    by_correlation: dict[str | None, Records] = defaultdict(lambda: Records([], []))
    for publication in everything.publications:
        by_correlation[publication.correlation_id].publications.append(publication)
    for reception in everything.receptions:
        by_correlation[reception.correlation_id].receptions.append(reception)
    result = Audit([build(contexts, records, c) for c, records in by_correlation.items()])
    for trace in result.traces:
        for event in trace.walk():
            result.traced_events.add(event.event_id)
            for handling in event.handlings:
                if handling.outcome is not None:
                    result.traced_handlings.add(
                        (handling.context, event.event_id, handling.outcome)
                    )
    result.recorded_events, result.recorded_handlings = _recorded(contexts)
    return result


def _recorded(contexts: list[BoundedContext]) -> tuple[set[str], set[tuple[str, str, str]]]:
    """Straight from the tables: every event id published and each context's final outcome
    per event (handled beats dead-lettered beats duplicate-only, as a trace shows it)."""
    events: set[str] = set()
    outcomes: dict[tuple[str, str], set[str]] = defaultdict(set)
    for context in contexts:
        with context.engine.connect() as connection:
            events |= set(connection.execute(select(published_records.c.event_id)).scalars())
            events |= set(connection.execute(select(outbox.c.event_id)).scalars())
            for event_id, outcome in connection.execute(
                select(handled_records.c.event_id, handled_records.c.outcome)
            ):
                outcomes[(context.name, event_id)].add(outcome)
    handlings = set()
    for (name, event_id), seen in outcomes.items():
        for outcome in (Outcome.HANDLED, Outcome.DEAD_LETTERED, Outcome.DUPLICATE):
            if outcome in seen:
                handlings.add((name, event_id, outcome.value))
                break
    return events, handlings
