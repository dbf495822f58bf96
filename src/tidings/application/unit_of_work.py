"""The state of one transaction: what is dispatched, recorded and written at commit."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from tidings.domain.aggregate import AggregateRoot
from tidings.domain.events import DomainEvent
from tidings.errors import CascadeDepthExceededError
from tidings.observability.tracing import current_context_if_tracing

if TYPE_CHECKING:
    from tidings.application.subscriptions import DispatchPlan, Subscription


class UnitOfWork:
    """Bookkeeping of one open transaction of a bounded context.

    It knows the correlation id of the root use case, the event being handled (the
    cause of anything published meanwhile), the outbox rows and durable after-commit
    work to write at commit, and the aggregates whose recorded events must be
    dispatched before commit. Persistence owns the session; this class only keeps the
    state the application layer needs, so dispatch stays free of I/O.
    """

    __slots__ = (
        "_aggregates",
        "_causation_id",
        "_recorded",
        "after_commit",
        "async_session",
        "cause",
        "correlation_id",
        "depth",
        "in_handler",
        "max_depth",
        "outbox",
        "session",
        "trace_contexts",
    )

    def __init__(
        self,
        *,
        correlation_id: str,
        causation_id: str | None = None,
        max_depth: int = 32,
        in_handler: bool = False,
        session: Any = None,
        async_session: Any = None,
    ) -> None:
        self.correlation_id = correlation_id
        self._causation_id = causation_id
        # The domain event whose handlers are running: the cause of what they publish.
        # Kept as the event, not its id string, so dispatch pays no conversion.
        self.cause: DomainEvent | None = None
        self.max_depth = max_depth
        self.depth = 0
        # True while an integration event handler or an after-commit handler runs in
        # this transaction: with ``cause`` (inline domain event handlers) it tells a
        # publish from a handler apart from one made by the use case itself.
        self.in_handler = in_handler
        self.session = session
        self.async_session = async_session
        self.outbox: list[dict[str, Any]] = []
        self.after_commit: list[tuple[DomainEvent, Subscription]] = []
        # When tracing: the OpenTelemetry context current when each event's after-commit
        # work was deferred (by id of the event), so that the work continues that trace.
        self.trace_contexts: dict[int, Any] | None = None
        self._aggregates: dict[int, AggregateRoot] = {}
        self._recorded: dict[int, AggregateRoot] = {}

    @property
    def causation_id(self) -> str | None:
        """The id of what caused the current work: the domain event being handled, else
        what the transaction was opened for (e.g. the integration event consumed)."""
        cause = self.cause
        return self._causation_id if cause is None else str(cause.event_id)

    @causation_id.setter
    def causation_id(self, value: str | None) -> None:
        self._causation_id = value

    @property
    def trigger_id(self) -> str | None:
        """What the transaction was opened for (the integration event a consumer handles),
        whichever domain event's handler is publishing: recorded with each outbox row, it
        links a consumer's publications to the handling that caused them."""
        return self._causation_id

    def enter_handling(self, event: DomainEvent) -> tuple[int, DomainEvent | None]:
        """Make ``event`` the cause of what its handlers publish; returns the state to restore."""
        depth = self.depth
        if depth >= self.max_depth:
            raise cascade_depth_exceeded(depth, event)
        previous = self.cause
        self.depth = depth + 1
        self.cause = event
        return depth, previous

    def leave_handling(self, state: tuple[int, DomainEvent | None]) -> None:
        self.depth, self.cause = state

    def defer(self, event: DomainEvent, plan: DispatchPlan) -> None:
        """Queue the after-commit work of ``plan`` for ``event``."""
        after_commit = self.after_commit
        for subscription in plan.after_commit:
            after_commit.append((event, subscription))
        trace_context = current_context_if_tracing()
        if trace_context is not None:
            if self.trace_contexts is None:
                self.trace_contexts = {}
            self.trace_contexts[id(event)] = trace_context

    def track(self, aggregate: AggregateRoot) -> None:
        """Dispatch ``aggregate``'s recorded events at commit even if no ORM session holds it."""
        self._aggregates.setdefault(id(aggregate), aggregate)

    def keep_alive(self, aggregate: AggregateRoot) -> None:
        """Hold ``aggregate`` (it recorded an event) until commit.

        An ORM identity map holds flushed, unchanged objects weakly; without this
        reference an aggregate whose events are still pending could be collected before
        commit, and its events lost.
        """
        self._recorded.setdefault(id(aggregate), aggregate)

    def pull_aggregate_events(self) -> list[DomainEvent]:
        """Events recorded on every aggregate this unit of work knows, oldest aggregate first."""
        events: list[DomainEvent] = []
        for aggregate in self._known_aggregates():
            if aggregate.has_pending_events():
                events.extend(aggregate.pull_events())
        return events

    def pull_recorded_events(self) -> list[DomainEvent]:
        """Events recorded during this unit of work (and on tracked aggregates) so far.

        Unlike :meth:`pull_aggregate_events` it does not scan the session for aggregates
        that recorded events before the transaction began: a consumer asks after each
        event it handles, and a scan of a session filling with a micro-batch's objects
        would cost each event the size of the batch. The scan at commit finds those.
        """
        events: list[DomainEvent] = []
        for aggregate in self._aggregates.values():
            if aggregate.has_pending_events():
                events.extend(aggregate.pull_events())
        session = self.session if self.async_session is None else self.async_session.sync_session
        if session is not None:
            for aggregate in self._recorded.values():
                # As at commit: an aggregate is dispatched once tracked or in the session.
                if aggregate.has_pending_events() and _in_session(session, aggregate):
                    events.extend(aggregate.pull_events())
        return events

    def _known_aggregates(self) -> list[AggregateRoot]:
        known = list(self._aggregates.values())
        session = self.session if self.async_session is None else self.async_session.sync_session
        if session is not None:
            # Aggregates that recorded events before this transaction began and were then
            # added to or loaded into its session.
            seen = set(self._aggregates)
            for obj in (*session.new, *session.identity_map.values()):
                if isinstance(obj, AggregateRoot) and id(obj) not in seen:
                    seen.add(id(obj))
                    known.append(obj)
        return known


def _in_session(session: Any, aggregate: AggregateRoot) -> bool:
    """``aggregate`` is held by the ORM ``session`` (an unmapped one never is)."""
    return hasattr(aggregate, "_sa_instance_state") and aggregate in session


def cascade_depth_exceeded(depth: int, event: DomainEvent) -> CascadeDepthExceededError:
    """The error of a dispatch nested ``depth`` levels deep: most likely a cycle."""
    return CascadeDepthExceededError(
        f"domain event dispatch nested {depth} levels deep while publishing "
        f"{type(event).__name__}: handlers publish events that lead back to "
        "themselves. Break the cycle, or raise max_cascade_depth on the context "
        "if the chain is legitimately this long."
    )


def cascade_depth_exceeded_unscoped(event: DomainEvent) -> CascadeDepthExceededError:
    """Outside a transaction nothing counts the depth (keeping that path lean), so a
    cycle shows up as Python's RecursionError, reported as what it almost surely is."""
    return CascadeDepthExceededError(
        f"domain event dispatch recursed too deep while publishing {type(event).__name__}: "
        "handlers publish events that lead back to themselves. Break the cycle (inside a "
        "transaction the limit is the context's max_cascade_depth)."
    )


def new_current_unit_of_work(name: str) -> ContextVar[UnitOfWork | None]:
    """The task- and thread-local slot holding a context's open unit of work."""
    return ContextVar(f"tidings.unit_of_work.{name}", default=None)
