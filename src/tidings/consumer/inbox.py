"""The inbox: which events a consuming context has already handled.

The row is inserted in the same transaction as the handlers' own writes, with an
"insert unless present" statement: a duplicate delivery finds the row (or, while the
first delivery's transaction is still open, waits on its unique key) and is
acknowledged without running the handlers again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import String, bindparam, delete, func, insert, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.persistence.tables import inbox
from tidings.persistence.types import UtcDateTime

_statements: dict[str, Any] = {}


def insert_unless_present(dialect: Dialect) -> Any:
    """The dialect's "insert, or do nothing if the key exists" statement for the inbox."""
    statement = _statements.get(dialect.name)
    if statement is None:
        if dialect.name == "postgresql":
            statement = postgres_insert(inbox).on_conflict_do_nothing()
        elif dialect.name == "sqlite":
            statement = sqlite_insert(inbox).on_conflict_do_nothing()
        else:  # MySQL / MariaDB
            statement = insert(inbox).prefix_with("IGNORE")
        _statements[dialect.name] = statement
    return statement


async def claim(session: AsyncSession, consumer: str, event_ids: Sequence[str]) -> set[str]:
    """Insert the inbox rows of ``event_ids`` (distinct) and return the ids that were new.

    PostgreSQL does it in one statement whose text never changes (the ids travel as one
    array), so it is prepared once per connection and a concurrent consumer inserting
    the same id makes this one wait and skip it. Other databases look the ids up first
    and insert the rest: a concurrent insert of the same id is then a unique-key error
    that fails the batch, and the consumer retries its events one by one.
    """
    if session.get_bind().dialect.name == "postgresql":
        rows = await session.execute(
            _postgres_claim,
            {"consumer": consumer, "event_ids": list(event_ids), "now": datetime.now(UTC)},
        )
        return set(rows.scalars())
    seen = set(
        (
            await session.execute(
                select(inbox.c.event_id).where(
                    inbox.c.consumer == consumer, inbox.c.event_id.in_(event_ids)
                )
            )
        ).scalars()
    )
    fresh = [event_id for event_id in event_ids if event_id not in seen]
    if fresh:
        await session.execute(inbox.insert(), [inbox_row(consumer, event_id) for event_id in fresh])
    return set(fresh)


_postgres_claim = (
    postgres_insert(inbox)
    .from_select(
        ["consumer", "event_id", "processed_at"],
        select(
            bindparam("consumer", type_=String),
            func.unnest(bindparam("event_ids", type_=ARRAY(String))),
            bindparam("now", type_=UtcDateTime),
        ),
    )
    .on_conflict_do_nothing()
    .returning(inbox.c.event_id)
)


def inbox_row(consumer: str, event_id: str) -> dict[str, Any]:
    return {"consumer": consumer, "event_id": event_id, "processed_at": datetime.now(UTC)}


def purge_statement(older_than: timedelta) -> Any:
    """Delete inbox entries older than ``older_than``.

    Keep them longer than any redelivery can take (broker retention, relay replays):
    a duplicate arriving after its entry was purged would run the handlers again.
    """
    return delete(inbox).where(inbox.c.processed_at < datetime.now(UTC) - older_than)
