"""The causal tree of one use case, joined from the records of several contexts.

Nodes: the use case (its correlation id), each integration event published (by which
context, when, when relayed), and each subscribing context's handling of it (when, how
long after publishing, the outcome) - or the gap where a handling is expected but not
recorded. Edges: use case → event, event → handling, handling → what its handlers
published. Who is expected to handle an event comes from each context's subscriptions
(:func:`tidings.application.event_flow.consumed_contracts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from tidings.application.event_flow import consumed_contracts
from tidings.causality.reading import (
    Publication,
    Reception,
    Records,
    find_correlation,
    latest_correlations,
    read_flow,
)
from tidings.causality.records import Outcome
from tidings.context import BoundedContext
from tidings.errors import TraceNotFoundError


class Status(StrEnum):
    """Where a use case (or one handling) stands."""

    COMPLETE = "complete"
    """Every event published and handled by every subscriber."""
    IN_PROGRESS = "in_progress"
    """Something is still in an outbox or not yet handled by a subscriber."""
    DEAD_LETTERED = "dead_lettered"
    """A subscriber dead-lettered an event (and no replay handled it since)."""


@dataclass(slots=True)
class Handling:
    """What one subscribing context did with one event; ``outcome`` None is a gap."""

    context: str
    event_id: str
    outcome: str | None
    received_at: datetime | None = None
    handled_at: datetime | None = None
    latency_s: float | None = None
    reason: str | None = None
    detail: str | None = None
    duplicates: int = 0
    published: list[EventNode] = field(default_factory=list)

    @property
    def node_id(self) -> str:
        return f"handling:{self.context}:{self.event_id}"


@dataclass(slots=True)
class EventNode:
    """One integration event and its handlings."""

    event_id: str
    context: str
    event_type: str
    event_version: int | None
    created_at: datetime | None
    published_at: datetime | None
    recorded_by_producer: bool
    attempts: int = 0
    last_error: str | None = None
    handlings: list[Handling] = field(default_factory=list)

    @property
    def node_id(self) -> str:
        return f"event:{self.event_id}"

    @property
    def pending(self) -> bool:
        """Still in its context's outbox: not yet confirmed by the broker."""
        return self.recorded_by_producer and self.published_at is None


@dataclass(slots=True)
class Trace:
    """The causal tree of one use case."""

    correlation_id: str | None
    events: list[EventNode]
    """The events the use case published itself (the roots of the tree)."""
    orphans: list[EventNode]
    """Events whose cause (the handling that published them) is not recorded."""
    now: datetime

    def walk(self) -> list[EventNode]:
        """Every event of the tree, depth first."""
        found: list[EventNode] = []
        stack = list(reversed([*self.events, *self.orphans]))
        while stack:
            event = stack.pop()
            found.append(event)
            for handling in reversed(event.handlings):
                stack.extend(reversed(handling.published))
        return found

    def handlings(self) -> list[Handling]:
        return [handling for event in self.walk() for handling in event.handlings]

    @property
    def status(self) -> Status:
        handlings = self.handlings()
        if any(h.outcome == Outcome.DEAD_LETTERED for h in handlings):
            return Status.DEAD_LETTERED
        if self.orphans or any(e.pending for e in self.walk()):
            return Status.IN_PROGRESS
        if any(h.outcome is None for h in handlings):
            return Status.IN_PROGRESS
        return Status.COMPLETE

    @property
    def gaps(self) -> list[str]:
        """What is missing, in words: pending events, handlings not yet recorded."""
        found: list[str] = []
        for event in self.walk():
            if event.pending:
                found.append(
                    f"{event.event_type} {event.event_id} waits in the outbox of "
                    f"{event.context} since {_ago(event.created_at, self.now)}"
                    + (f" ({event.attempts} failed attempts)" if event.attempts else "")
                )
            for handling in event.handlings:
                if handling.outcome is None and not event.pending:
                    found.append(
                        f"{event.event_type} {event.event_id} published "
                        f"{_ago(event.published_at, self.now)}, not yet handled by "
                        f"{handling.context}"
                    )
                elif handling.outcome == Outcome.DEAD_LETTERED:
                    found.append(
                        f"{event.event_type} {event.event_id} dead-lettered in "
                        f"{handling.context}: {handling.reason}"
                    )
        for orphan in self.orphans:
            found.append(f"{orphan.event_type} {orphan.event_id}: its cause is not recorded")
        return found

    @property
    def started_at(self) -> datetime | None:
        times = [e.created_at for e in self.walk() if e.created_at is not None]
        return min(times) if times else None

    @property
    def origin(self) -> str | None:
        """The context where the use case ran (that published the first event)."""
        return self.events[0].context if self.events else None


def trace(contexts: Sequence[BoundedContext], any_id: str) -> Trace:
    """The causal tree of the use case ``any_id`` belongs to (a correlation or event id)."""
    contexts = list(contexts)
    found, correlation_id = find_correlation(contexts, any_id)
    if not found:
        names = ", ".join(context.name for context in contexts)
        raise TraceNotFoundError(
            f"no correlation id or event id {any_id!r} is recorded in {names}; check the "
            "id, name every context it may have reached, or it was purged (causal_retention)"
        )
    events = {any_id} if correlation_id is None else set()
    return build(contexts, read_flow(contexts, correlation_id, events), correlation_id)


def latest(contexts: Sequence[BoundedContext], limit: int) -> list[Trace]:
    """The traces of the ``limit`` latest use cases, newest first."""
    contexts = list(contexts)
    return [
        build(contexts, read_flow(contexts, correlation, set()), correlation)
        for correlation in latest_correlations(contexts, limit)
    ]


def build(
    contexts: Sequence[BoundedContext], records: Records, correlation_id: str | None
) -> Trace:
    """Join ``records`` into the tree, with a gap wherever a subscriber has no record."""
    subscribers = _subscribers(contexts)
    nodes: dict[str, EventNode] = {}
    for publication in sorted(records.publications, key=_created):
        nodes.setdefault(publication.event_id, _event_of(publication))
    for reception in records.receptions:
        if reception.event_id not in nodes:  # its producer is not among the contexts
            nodes[reception.event_id] = EventNode(
                event_id=reception.event_id,
                context=reception.source or "?",
                event_type=reception.event_type or "?",
                event_version=None,
                created_at=None,
                published_at=None,
                recorded_by_producer=False,
            )
    by_target = _receptions_by_target(records.receptions)
    for event in nodes.values():
        expected = subscribers.get(event.event_type, [])
        received = [name for (name, event_id) in by_target if event_id == event.event_id]
        for name in dict.fromkeys([*expected, *received]):
            event.handlings.append(
                _handling(event, name, by_target.get((name, event.event_id), []))
            )
    triggers = {p.event_id: p.trigger_id for p in records.publications}
    roots: list[EventNode] = []
    orphans: list[EventNode] = []
    for event in nodes.values():
        trigger = triggers.get(event.event_id)
        cause = nodes.get(trigger) if trigger else None
        handling = None
        if cause is not None:
            handling = next((h for h in cause.handlings if h.context == event.context), None)
        if handling is not None:
            handling.published.append(event)
        elif cause is not None:  # published while handling an event it has no record of
            orphans.append(event)
        else:  # the use case's own (a trigger naming no event: the caller's causation id)
            roots.append(event)
    return Trace(correlation_id, roots, orphans, datetime.now(UTC))


def _subscribers(contexts: Sequence[BoundedContext]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for context in contexts:
        for contract in consumed_contracts(context):
            names = found.setdefault(contract.event_type, [])
            if context.name not in names:
                names.append(context.name)
    return found


def _receptions_by_target(receptions: list[Reception]) -> dict[tuple[str, str], list[Reception]]:
    found: dict[tuple[str, str], list[Reception]] = {}
    for reception in receptions:
        found.setdefault((reception.context, reception.event_id), []).append(reception)
    return found


def _handling(event: EventNode, context: str, receptions: list[Reception]) -> Handling:
    """The outcome that counts: handled (even after a dead letter was replayed), else the
    last dead letter, else duplicate; duplicates are counted; nothing recorded is a gap."""
    handled = [r for r in receptions if r.outcome == Outcome.HANDLED]
    dead = [r for r in receptions if r.outcome == Outcome.DEAD_LETTERED]
    chosen = handled[0] if handled else (dead[-1] if dead else None)
    duplicates = [r for r in receptions if r.outcome == Outcome.DUPLICATE]
    chosen = chosen or (duplicates[0] if duplicates else None)  # its first record purged
    handling = Handling(
        context=context,
        event_id=event.event_id,
        outcome=None if chosen is None else chosen.outcome,
        duplicates=len(duplicates),
    )
    if chosen is None:
        return handling
    handling.received_at = chosen.received_at
    handling.handled_at = chosen.handled_at
    handling.reason, handling.detail = chosen.reason, chosen.detail
    start = event.published_at or event.created_at
    if start is not None:
        handling.latency_s = max((chosen.handled_at - start).total_seconds(), 0.0)
    return handling


def _event_of(publication: Publication) -> EventNode:
    return EventNode(
        event_id=publication.event_id,
        context=publication.context,
        event_type=publication.event_type,
        event_version=publication.event_version,
        created_at=publication.created_at,
        published_at=publication.published_at,
        recorded_by_producer=True,
        attempts=publication.attempts,
        last_error=publication.last_error,
    )


def _created(publication: Publication) -> datetime:
    return publication.created_at


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "at an unknown time"
    return f"{max((now - moment).total_seconds(), 0.0):.1f} s ago"
