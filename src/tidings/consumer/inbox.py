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

from sqlalchemy import String, bindparam, delete, insert, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.causality.records import Outcome, handled_row, insert_handled
from tidings.contracts.cloud_event import CloudEvent
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


async def claim(
    session: AsyncSession, consumer: str, items: Sequence[tuple[CloudEvent, datetime]]
) -> set[str]:
    """Claim a micro-batch in the inbox and record its outcomes; the ids that were new.

    ``items`` are (event, received at) in delivery order. Each gets a handled record:
    ``handled`` for the first delivery of an id the inbox did not have, ``duplicate``
    otherwise. Records commit (or roll back) with the handlers' writes, like the inbox
    rows, so no outcome is kept for work undone; ``handled_at`` is the claim's moment.

    PostgreSQL does it all in one statement whose text never changes (the values travel
    as arrays): prepared once per connection, one round trip for a batch, and a
    concurrent consumer inserting the same id makes this one wait and skip it. Other
    databases look the ids up first and insert the rest: a concurrent insert of the same
    id is then a unique-key error that fails the batch, and the consumer retries its
    events one by one.
    """
    now = datetime.now(UTC)
    records = [
        handled_row(consumer, event, at, Outcome.HANDLED, handled_at=now) for event, at in items
    ]
    first = list(dict.fromkeys(record["event_id"] for record in records))
    if session.get_bind().dialect.name == "postgresql":
        rows = await session.execute(
            _postgres_claim,
            {
                "consumer": consumer,
                "event_ids": first,
                "now": now,
                **{name: [r[column] for r in records] for name, column in _ARRAYS.items()},
            },
        )
        return set(rows.scalars())
    seen = set(
        (
            await session.execute(
                select(inbox.c.event_id).where(
                    inbox.c.consumer == consumer, inbox.c.event_id.in_(first)
                )
            )
        ).scalars()
    )
    fresh = {event_id for event_id in first if event_id not in seen}
    if fresh:
        new = [
            {"consumer": consumer, "event_id": i, "processed_at": now} for i in first if i in fresh
        ]
        await session.execute(inbox.insert(), new)
    unclaimed = set(fresh)
    for record in records:
        if record["event_id"] in unclaimed:
            unclaimed.discard(record["event_id"])
        else:
            record["outcome"] = Outcome.DUPLICATE.value
    await session.execute(insert_handled, records)
    return fresh


_ARRAYS = {
    "ids": "event_id",
    "sources": "source",
    "types": "event_type",
    "correlations": "correlation_id",
    "causations": "causation_id",
    "received": "received_at",
}

# The window keeps "first delivery of its id" exact when a batch holds an id twice;
# the inserted inbox rows are visible to the second insert through the CTE's RETURNING.
_postgres_claim = (
    text(
        """
WITH claimed AS (
    INSERT INTO tidings_inbox (consumer, event_id, processed_at)
    SELECT :consumer, id, :now FROM unnest(:event_ids) AS u(id)
    ON CONFLICT DO NOTHING
    RETURNING event_id
), recorded AS (
    INSERT INTO tidings_handled (consumer, event_id, source, event_type, correlation_id,
                                 causation_id, received_at, handled_at, outcome)
    SELECT :consumer, r.id, r.source, r.type, r.correlation, r.causation, r.received, :now,
           CASE WHEN r.n = min(r.n) OVER (PARTITION BY r.id)
                     AND r.id IN (SELECT event_id FROM claimed)
                THEN 'handled' ELSE 'duplicate' END
    FROM unnest(:ids, :sources, :types, :correlations, :causations, :received)
         WITH ORDINALITY AS r(id, source, type, correlation, causation, received, n)
    ORDER BY r.n
)
SELECT event_id FROM claimed
"""
    )
    .bindparams(
        bindparam("consumer", type_=String),
        bindparam("now", type_=UtcDateTime),
        bindparam("event_ids", type_=ARRAY(String)),
        bindparam("ids", type_=ARRAY(String)),
        bindparam("sources", type_=ARRAY(String)),
        bindparam("types", type_=ARRAY(String)),
        bindparam("correlations", type_=ARRAY(String)),
        bindparam("causations", type_=ARRAY(String)),
        bindparam("received", type_=ARRAY(UtcDateTime)),
    )
    .columns()
)


def inbox_row(consumer: str, event_id: str) -> dict[str, Any]:
    return {"consumer": consumer, "event_id": event_id, "processed_at": datetime.now(UTC)}


def purge_statement(older_than: timedelta) -> Any:
    """Delete inbox entries older than ``older_than``.

    Keep them longer than any redelivery can take (broker retention, relay replays):
    a duplicate arriving after its entry was purged would run the handlers again.
    """
    return delete(inbox).where(inbox.c.processed_at < datetime.now(UTC) - older_than)
