"""Reading one context's causal records: by correlation id, by event id, the latest ones.

Every query is served by an index: ``correlation_id`` and ``event_id`` on both record
tables and the outbox, ``published_at`` for the latest use cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, or_, select, true

from tidings.context import BoundedContext
from tidings.persistence.tables import handled_records, outbox, published_records

_p, _h, _o = published_records.c, handled_records.c, outbox.c


@dataclass(frozen=True, slots=True)
class Publication:
    """An integration event a context published (``published_at`` None: still in its outbox)."""

    context: str
    event_id: str
    event_type: str
    event_version: int
    correlation_id: str | None
    causation_id: str | None
    trigger_id: str | None
    created_at: datetime
    published_at: datetime | None
    attempts: int = 0
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class Reception:
    """What a context's consumer did with an event it received."""

    context: str
    consumer: str
    event_id: str
    source: str | None
    event_type: str | None
    correlation_id: str | None
    causation_id: str | None
    received_at: datetime
    handled_at: datetime
    outcome: str
    reason: str | None
    detail: str | None


@dataclass(slots=True)
class Records:
    """The records of one flow gathered from several contexts."""

    publications: list[Publication]
    receptions: list[Reception]


def read_flow(
    contexts: list[BoundedContext],
    correlation_id: str | None,
    event_ids: set[str],
    *,
    everything: bool = False,
) -> Records:
    """Every record of ``correlation_id`` (or, without one, of ``event_ids``) in ``contexts``;
    ``everything``: all records (audits of a small run)."""
    records = Records([], [])
    for context in contexts:
        with context.engine.connect() as connection:
            records.publications += _publications(
                connection,
                context.name,
                _matching(_p, correlation_id, event_ids, everything),
                _matching(_o, correlation_id, event_ids, everything),
            )
            records.receptions += _receptions(
                connection, context.name, _matching(_h, correlation_id, event_ids, everything)
            )
    return records


def find_correlation(contexts: list[BoundedContext], any_id: str) -> tuple[bool, str | None]:
    """(found, correlation id) for a correlation id or an event id known to any context."""
    for context in contexts:
        with context.engine.connect() as connection:
            for columns in (_p, _h, _o):
                if connection.execute(
                    select(columns.correlation_id).where(columns.correlation_id == any_id).limit(1)
                ).first():
                    return True, any_id
    for context in contexts:
        with context.engine.connect() as connection:
            for columns in (_p, _o, _h):
                row = connection.execute(
                    select(columns.correlation_id).where(columns.event_id == any_id).limit(1)
                ).first()
                if row is not None:
                    return True, row[0]
    return False, None


def latest_correlations(contexts: list[BoundedContext], limit: int) -> list[str]:
    """The correlation ids of the ``limit`` latest use cases published in ``contexts``."""
    seen: dict[str, datetime] = {}
    scan = max(limit * 50, 500)  # rows per context: a use case publishes a few events
    for context in contexts:
        with context.engine.connect() as connection:
            rows = list(
                connection.execute(
                    select(_p.correlation_id, _p.published_at)
                    .where(_p.correlation_id.is_not(None))
                    .order_by(_p.published_at.desc())
                    .limit(scan)
                )
            )
            rows += list(
                connection.execute(
                    select(_o.correlation_id, _o.created_at)
                    .where(_o.published_at.is_(None), _o.correlation_id.is_not(None))
                    .order_by(_o.position.desc())
                    .limit(scan)
                )
            )
        for correlation, at in rows:
            if correlation not in seen or at > seen[correlation]:
                seen[correlation] = at
    ordered = sorted(seen, key=lambda c: seen[c], reverse=True)
    return ordered[:limit]


def _publications(
    connection: Connection, context: str, wanted_p: Any, wanted_o: Any
) -> list[Publication]:
    found = [
        Publication(context=context, **row._mapping)
        for row in connection.execute(
            select(
                _p.event_id,
                _p.event_type,
                _p.event_version,
                _p.correlation_id,
                _p.causation_id,
                _p.trigger_id,
                _p.created_at,
                _p.published_at,
            ).where(wanted_p)
        )
    ]
    recorded = {publication.event_id for publication in found}
    for row in connection.execute(
        select(
            _o.event_id,
            _o.event_type,
            _o.event_version,
            _o.correlation_id,
            _o.causation_id,
            _o.trigger_id,
            _o.created_at,
            _o.published_at,
            _o.attempts,
            _o.last_error,
        ).where(wanted_o, _o.published_at.is_(None))
    ):
        if row[0] not in recorded:
            found.append(Publication(context=context, **row._mapping))
    return found


def _receptions(connection: Connection, context: str, wanted: Any) -> list[Reception]:
    query = (
        select(
            _h.consumer,
            _h.event_id,
            _h.source,
            _h.event_type,
            _h.correlation_id,
            _h.causation_id,
            _h.received_at,
            _h.handled_at,
            _h.outcome,
            _h.reason,
            _h.detail,
        )
        .where(wanted)
        .order_by(_h.handled_at)
    )
    return [Reception(context=context, **row._mapping) for row in connection.execute(query)]


def _matching(
    columns: Any, correlation_id: str | None, event_ids: set[str], everything: bool = False
) -> Any:
    if everything:
        return true()
    conditions = []
    if correlation_id is not None:
        conditions.append(columns.correlation_id == correlation_id)
    if event_ids:
        conditions.append(columns.event_id.in_(sorted(event_ids)))
    return or_(*conditions) if len(conditions) > 1 else conditions[0]
