"""The durable registry of after-commit work (event, handler) and its execution.

Each pair is written in the transaction that published the event, so it exists if and
only if that transaction committed. After commit it runs in a transaction of its own
that also marks it complete: a handler's database writes and its completion commit
together, so they happen once. Failures are recorded with a backoff; work left over by
a crash or a failure is picked up by :meth:`PublicationLog.due`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update

from tidings.application.retry import RetryPolicy
from tidings.application.subscriptions import DomainEventSubscriptions, Subscription
from tidings.application.unit_of_work import UnitOfWork
from tidings.domain.events import DomainEvent
from tidings.domain.ids import uuid7
from tidings.persistence.domain_event_codec import DomainEventCodec
from tidings.persistence.tables import publication_log
from tidings.redaction import describe_error

logger = logging.getLogger("tidings.after_commit")

_table = publication_log


@dataclass(frozen=True, slots=True)
class PendingWork:
    """One after-commit handler call waiting to run."""

    entry_id: str
    event: DomainEvent
    subscription: Subscription
    correlation_id: str | None
    # The OpenTelemetry context it was deferred in, while in memory; work read back
    # from the table (after a failure or a restart) has none and starts a trace of its own.
    trace_context: Any = None


class PublicationLog:
    """Statements and bookkeeping of the publication log of one context."""

    def __init__(self, subscriptions: DomainEventSubscriptions, retry: RetryPolicy) -> None:
        self._subscriptions = subscriptions
        self._codec = DomainEventCodec()
        self.retry = retry
        self.claim = (
            update(_table)
            .where(_table.c.entry_id == bindparam("p_entry_id"), _table.c.completed_at.is_(None))
            .values(attempts=_table.c.attempts + 1)
        )
        self.complete = (
            update(_table)
            .where(_table.c.entry_id == bindparam("p_entry_id"))
            .values(completed_at=bindparam("p_now"), last_error=None)
        )
        self.insert = insert(_table)

    def record(self, uow: UnitOfWork) -> tuple[list[dict[str, Any]], list[PendingWork]]:
        """Rows to insert for the deferred work of ``uow``, and the work itself."""
        now = datetime.now(UTC)
        rows: list[dict[str, Any]] = []
        work: list[PendingWork] = []
        encoded: dict[int, str] = {}
        contexts = uow.trace_contexts or {}
        for event, subscription in uow.after_commit:
            payload = encoded.get(id(event))
            if payload is None:
                payload = encoded[id(event)] = self._codec.encode(event)
            entry_id = str(uuid7())
            rows.append(
                {
                    "entry_id": entry_id,
                    "handler_id": subscription.handler_id,
                    "event_type": self._codec.type_name(type(event)),
                    "event_id": str(event.event_id),
                    "payload": payload,
                    "correlation_id": uow.correlation_id,
                    "created_at": now,
                    "attempts": 0,
                    "next_attempt_at": now,
                }
            )
            work.append(
                PendingWork(
                    entry_id, event, subscription, uow.correlation_id, contexts.get(id(event))
                )
            )
        return rows, work

    def failure_values(self, work: PendingWork, attempts: int, error: BaseException) -> Any:
        """The UPDATE recording a failed attempt and when to try again."""
        delay = self.retry.delay(attempts)
        if self.retry.gives_up_after(attempts):
            delay = timedelta.max.total_seconds() / 4  # parked: resumes only by hand
        next_at = datetime.now(UTC) + timedelta(seconds=min(delay, 3.0e9))
        return (
            update(_table)
            .where(_table.c.entry_id == work.entry_id)
            .values(
                attempts=_table.c.attempts + 1,
                last_error=describe_error(error)[:4000],
                next_attempt_at=next_at,
            )
        )

    def due_query(self, limit: int) -> Any:
        return (
            select(_table)
            .where(_table.c.completed_at.is_(None), _table.c.next_attempt_at <= datetime.now(UTC))
            .order_by(_table.c.created_at, _table.c.entry_id)
            .limit(limit)
        )

    def to_work(self, rows: Sequence[Any]) -> list[PendingWork]:
        """Rebuild pending work from stored rows, skipping handlers not subscribed here."""
        work: list[PendingWork] = []
        for row in rows:
            subscription = self._subscriptions.after_commit_subscription(row.handler_id)
            if subscription is None:
                logger.warning(
                    "after-commit work %s names handler %s, which is not subscribed in this "
                    "process; it stays pending",
                    row.entry_id,
                    row.handler_id,
                )
                continue
            event = self._codec.decode(row.event_type, row.payload, subscription.event_types)
            work.append(PendingWork(row.entry_id, event, subscription, row.correlation_id))
        return work

    def purge_query(self, older_than: timedelta) -> Any:
        cutoff = datetime.now(UTC) - older_than
        return delete(_table).where(_table.c.completed_at < cutoff)

    @staticmethod
    def pending_count_query() -> Any:
        return select(func.count()).select_from(_table).where(_table.c.completed_at.is_(None))
