"""Finding an event by its id or its correlation id, in every context's tables.

Each outbox (pending and archived rows) is searched by event id and correlation id,
both indexed; the event ids found there lead to the inboxes (by primary key) and the
dead letters (by their event-id index). Dead letters are also matched by the
correlation id in their stored headers, for events whose outbox row is long deleted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import or_, select
from sqlalchemy.engine import RowMapping

from tidings.context import BoundedContext
from tidings.persistence.tables import dead_letters, inbox, outbox

#: the most rows shown of each table per context
HITS_SHOWN = 200
_o, _i, _d = outbox.c, inbox.c, dead_letters.c


@dataclass(frozen=True, slots=True)
class ContextHits:
    """What one context's tables hold about the identifier."""

    context: str
    outbox: Sequence[RowMapping] = ()
    inbox: Sequence[RowMapping] = ()
    dead_letters: Sequence[RowMapping] = ()

    @property
    def empty(self) -> bool:
        return not (self.outbox or self.inbox or self.dead_letters)


@dataclass(frozen=True, slots=True)
class Lookup:
    """Every context's hits for one event id or correlation id."""

    identifier: str
    contexts: list[ContextHits] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return any(not hits.empty for hits in self.contexts)

    @property
    def event_types(self) -> set[str]:
        """The types of the events found (the map highlights them)."""
        return {
            str(row["event_type"])
            for hits in self.contexts
            for row in (*hits.outbox, *hits.dead_letters)
            if row["event_type"]
        }


async def look_up(contexts: Sequence[BoundedContext], identifier: str) -> Lookup:
    """Where ``identifier`` (an event id or a correlation id) appears, context by context."""
    identifier = identifier.strip()
    outbox_rows = {c.name: await _outbox_rows(c, identifier) for c in contexts}
    # An event published by one context is received (inbox, dead letter) by another.
    event_ids = {identifier} | {str(r["event_id"]) for rows in outbox_rows.values() for r in rows}
    result = Lookup(identifier)
    for context in contexts:
        letters = await _dead_letter_rows(context, identifier, event_ids)
        received = event_ids | {str(r["event_id"]) for r in letters if r["event_id"]}
        result.contexts.append(
            ContextHits(
                context.name,
                outbox_rows[context.name],
                await _inbox_rows(context, received),
                letters,
            )
        )
    return result


async def _outbox_rows(context: BoundedContext, identifier: str) -> Sequence[RowMapping]:
    query = (
        select(
            _o.position,
            _o.event_id,
            _o.event_type,
            _o.event_version,
            _o.correlation_id,
            _o.causation_id,
            _o.created_at,
            _o.published_at,
            _o.attempts,
            _o.last_error,
        )
        .where(or_(_o.event_id == identifier, _o.correlation_id == identifier))
        .order_by(_o.position)
        .limit(HITS_SHOWN)
    )
    async with context.async_engine.connect() as connection:
        return (await connection.execute(query)).mappings().all()


async def _inbox_rows(context: BoundedContext, event_ids: set[str]) -> Sequence[RowMapping]:
    query = (
        select(_i.event_id, _i.processed_at)
        .where(_i.consumer == context.consumer_group, _i.event_id.in_(sorted(event_ids)))
        .order_by(_i.processed_at)
        .limit(HITS_SHOWN)
    )
    async with context.async_engine.connect() as connection:
        return (await connection.execute(query)).mappings().all()


async def _dead_letter_rows(
    context: BoundedContext, identifier: str, event_ids: set[str]
) -> Sequence[RowMapping]:
    # Headers are stored as JSON text; a correlation id sits in "<prefix>correlationid".
    escaped = identifier.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    in_headers = _d.headers.like(f'%correlationid": "{escaped}"%', escape="\\")
    query = (
        select(
            _d.letter_id,
            _d.consumer,
            _d.reason,
            _d.event_id,
            _d.event_type,
            _d.error_type,
            _d.first_failed_at,
        )
        .where(or_(_d.event_id.in_(sorted(event_ids)), in_headers))
        .order_by(_d.first_failed_at)
        .limit(HITS_SHOWN)
    )
    async with context.async_engine.connect() as connection:
        return (await connection.execute(query)).mappings().all()
