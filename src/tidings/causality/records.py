"""Writing and purging the causal records: what a context published and what it handled.

Both are small rows (ids, types, times, outcome) kept for ``causal_retention`` after the
payloads are gone, so that ``tidings trace`` can follow a use case across contexts.

- A **published** record is derived from the outbox row by the relay, in the statement
  (PostgreSQL) or the transaction (elsewhere) that deletes or archives the row once the
  broker confirmed it: the publishing transaction pays nothing, and the record exists
  exactly when the row is gone. Rows still in the outbox are read from the outbox.
- A **handled** record is written in the consumer's transaction with the inbox claim, one
  multi-row insert per micro-batch (``handled`` for the events claimed, ``duplicate`` for
  the ones the inbox already had), and with the dead letter when an event is
  dead-lettered (``dead_lettered`` with the reason).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, bindparam, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Executable
from sqlalchemy.sql.elements import ColumnElement

from tidings.contracts.cloud_event import CloudEvent
from tidings.persistence.tables import handled_records, outbox, published_records
from tidings.persistence.types import UtcDateTime

DEFAULT_CAUSAL_RETENTION = timedelta(days=30)

_COPIED = (
    "event_id",
    "event_type",
    "event_version",
    "source",
    "correlation_id",
    "causation_id",
    "trigger_id",
    "created_at",
)
_NAMES = [*_COPIED, "published_at"]


class Outcome(StrEnum):
    """What became of an event a context received."""

    HANDLED = "handled"
    DUPLICATE = "duplicate"
    DEAD_LETTERED = "dead_lettered"


def relay_marks(dialect: Dialect, in_batch: ColumnElement[bool], *, archive: bool) -> list[Any]:
    """The statements that mark confirmed outbox rows and record them as published.

    Parameters: ``positions`` (as ``in_batch`` binds them) and ``now``. PostgreSQL runs
    one statement (the delete or archive feeds the insert through ``RETURNING``); other
    databases run an insert from the rows, then the delete or archive, in one transaction.
    """
    now = bindparam("now", type_=UtcDateTime)
    if dialect.name == "postgresql":
        if archive:
            marked = update(outbox).where(in_batch).values(published_at=now)
        else:
            marked = delete(outbox).where(in_batch)  # type: ignore[assignment]
        gone = marked.returning(*(outbox.c[name] for name in _COPIED)).cte("marked")
        upsert = (
            postgres_insert(published_records)
            .from_select(_NAMES, select(*(gone.c[name] for name in _COPIED), now))
            .on_conflict_do_nothing()
        )
        return [upsert]
    record = record_published(dialect, in_batch)
    if archive:
        return [record, update(outbox).where(in_batch).values(published_at=now)]
    return [record, delete(outbox).where(in_batch)]


def record_published(dialect: Dialect, in_batch: ColumnElement[bool]) -> Any:
    """The statement that records outbox rows as published, from the rows themselves.

    Rows already recorded (by a relay that died before its delete committed, or before
    an unrouted row is archived) are left as they are.
    """
    now = bindparam("now", type_=UtcDateTime)
    rows = select(*(outbox.c[name] for name in _COPIED), now).where(in_batch)
    if dialect.name == "postgresql":
        return postgres_insert(published_records).from_select(_NAMES, rows).on_conflict_do_nothing()
    return (
        insert(published_records)
        .from_select(_NAMES, rows)
        .prefix_with("OR IGNORE", dialect="sqlite")
        .prefix_with("IGNORE", dialect="mysql")
        .prefix_with("IGNORE", dialect="mariadb")
    )


def handled_row(
    consumer: str,
    event: CloudEvent,
    received_at: datetime,
    outcome: Outcome,
    *,
    reason: str | None = None,
    detail: str | None = None,
    handled_at: datetime | None = None,
) -> dict[str, Any]:
    """The handled record of ``event`` received by consumer group ``consumer``."""
    return {
        "consumer": consumer,
        "event_id": event.id[:200],
        "source": (event.source or "")[:200] or None,
        "event_type": (event.type or "")[:200] or None,
        "correlation_id": _clip(event.correlationid),
        "causation_id": _clip(event.causationid),
        "received_at": received_at,
        "handled_at": handled_at or datetime.now(UTC),
        "outcome": outcome.value,
        "reason": reason,
        "detail": None if detail is None else detail[:2000].replace("\x00", "\ufffd"),
    }


insert_handled: Executable = insert(handled_records)


def purge(engine: Engine, older_than: timedelta = DEFAULT_CAUSAL_RETENTION) -> int:
    """Delete the causal records older than ``older_than``; how many were deleted."""
    cutoff = datetime.now(UTC) - older_than
    deleted = 0
    with engine.begin() as connection:
        for statement in (
            delete(published_records).where(published_records.c.published_at < cutoff),
            delete(handled_records).where(handled_records.c.handled_at < cutoff),
        ):
            deleted += int(getattr(connection.execute(statement), "rowcount", 0) or 0)
    return deleted


def _clip(value: str | None) -> str | None:
    return None if value is None else value[:200]


def dead_letter_record(
    consumer: str,
    event: CloudEvent,
    reason: str,
    error: BaseException | None,
    received_at: datetime | None = None,
) -> dict[str, Any]:
    """The handled record of an event dead-lettered for ``reason``."""
    now = datetime.now(UTC)
    return handled_row(
        consumer,
        event,
        received_at or now,
        Outcome.DEAD_LETTERED,
        reason=str(reason),
        detail=None if error is None else f"{type(error).__name__}: {error}",
        handled_at=now,
    )
