"""Aggregate roots that record the domain events they cause."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any

from tidings.domain.events import DomainEvent

_PENDING = "_tidings_pending_events"

Recorder = Callable[["AggregateRoot"], None]
# Who wants to hear about aggregates recording events: the open unit of work. It keeps a
# strong reference to them, because an ORM's identity map may hold a flushed, unchanged
# aggregate only weakly and let it (and its pending events) be garbage-collected.
_recorder: ContextVar[Recorder | None] = ContextVar("tidings.aggregate_recorder", default=None)


def listen_for_recorded_events(recorder: Recorder | None) -> Token[Recorder | None]:
    """Have ``recorder`` called with every aggregate that records an event in this
    context (thread or task); reset with :func:`stop_listening`."""
    return _recorder.set(recorder)


def stop_listening(token: Token[Recorder | None]) -> None:
    _recorder.reset(token)


class AggregateRoot:
    """Base for aggregates that record domain events to be dispatched on commit.

    The pending list is created lazily rather than in ``__init__`` because ORMs such as
    SQLAlchemy build loaded instances without calling ``__init__``; an aggregate loaded
    from the database can therefore record events like a new one.
    """

    def record(self, event: DomainEvent) -> None:
        """Remember ``event``; the unit of work dispatches it before committing."""
        pending: list[DomainEvent] | None = self.__dict__.get(_PENDING)
        if pending is None:
            pending = []
            # object.__setattr__ bypasses instrumentation of mapped classes: the list is
            # bookkeeping, never a column.
            object.__setattr__(self, _PENDING, pending)
        pending.append(event)
        recorder = _recorder.get()
        if recorder is not None:
            recorder(self)

    def pull_events(self) -> list[DomainEvent]:
        """Return the recorded events, oldest first, and forget them."""
        pending: list[DomainEvent] | None = self.__dict__.get(_PENDING)
        if not pending:
            return []
        object.__setattr__(self, _PENDING, [])
        return pending

    def has_pending_events(self) -> bool:
        """True when events were recorded and not pulled yet."""
        return bool(self.__dict__.get(_PENDING))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop(_PENDING, None)
        return state
