"""Dead letters as the dashboard filters, pages, replays and purges them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import delete, func, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.sql.elements import ColumnElement

from tidings.consumer.consumer import Consumer
from tidings.consumer.dead_letters import DeadLetterReason
from tidings.context import BoundedContext
from tidings.persistence.tables import dead_letters
from tidings.transports.memory import MemoryTransport

_c = dead_letters.c
# Everything but the message itself: a page of summaries never reads the bodies.
_summary_columns = [c for c in dead_letters.c if c.name not in ("body", "headers")]
PAGE_SIZE = 50
REASONS = tuple(reason.value for reason in DeadLetterReason)
#: the most letters one "replay matching" action runs (purge has no limit)
REPLAY_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class LetterFilter:
    """Which dead letters of a context: by reason, event type and first failure time."""

    context: str
    reason: str | None = None
    event_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, str], default_context: str) -> LetterFilter:
        """Read the filter from a query string or form; unknown values are dropped."""
        reason = params.get("reason") or None
        return cls(
            context=params.get("context") or default_context,
            reason=reason if reason in REASONS else None,
            event_type=(params.get("type") or "").strip() or None,
            since=_moment(params.get("since")),
            until=_moment(params.get("until")),
        )

    def params(self, **changes: Any) -> dict[str, str]:
        """The filter as query parameters (what ``from_params`` reads back)."""
        shown = replace(self, **changes) if changes else self
        values = {
            "context": shown.context,
            "reason": shown.reason,
            "type": shown.event_type,
            "since": _local(shown.since),
            "until": _local(shown.until),
        }
        return {key: value for key, value in values.items() if value}

    def query_string(self) -> str:
        return urlencode(self.params())

    def conditions(self, group: str) -> list[ColumnElement[bool]]:
        found = [_c.consumer == group]
        if self.reason is not None:
            found.append(_c.reason == self.reason)
        if self.event_type is not None:
            found.append(_c.event_type == self.event_type)
        if self.since is not None:
            found.append(_c.first_failed_at >= self.since)
        if self.until is not None:
            found.append(_c.first_failed_at < self.until)
        return found


@dataclass(frozen=True, slots=True)
class LetterPage:
    """One page of summaries (newest first) and how many letters match in all."""

    letters: Sequence[RowMapping]
    total: int
    page: int
    pages: int


async def letter_page(context: BoundedContext, chosen: LetterFilter, page: int) -> LetterPage:
    """Page ``page`` (from 1) of the letters ``chosen`` selects, newest first."""
    where = chosen.conditions(context.consumer_group)
    async with context.async_engine.connect() as connection:
        total = int(
            (
                await connection.execute(
                    select(func.count()).select_from(dead_letters).where(*where)
                )
            ).scalar_one()
        )
        pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
        page = min(max(page, 1), pages)
        rows = (
            (
                await connection.execute(
                    select(*_summary_columns)
                    .where(*where)
                    # The (consumer, first_failed_at) index, read backwards.
                    .order_by(_c.first_failed_at.desc(), _c.letter_id.desc())
                    .offset((page - 1) * PAGE_SIZE)
                    .limit(PAGE_SIZE)
                )
            )
            .mappings()
            .all()
        )
    return LetterPage(rows, total, page, pages)


async def matching_ids(context: BoundedContext, chosen: LetterFilter, limit: int) -> list[str]:
    """The ids of (at most ``limit``) letters ``chosen`` selects, oldest first."""
    async with context.async_engine.connect() as connection:
        result = await connection.execute(
            select(_c.letter_id)
            .where(*chosen.conditions(context.consumer_group))
            .order_by(_c.first_failed_at, _c.letter_id)
            .limit(limit)
        )
        return [row[0] for row in result]


async def replay(context: BoundedContext, letter_ids: Sequence[str]) -> tuple[int, int]:
    """Run the letters through the context's handlers again: (succeeded, still failing).

    The same path as ``tidings dlq replay``: the inbox still guards, succeeded letters
    are removed, failing ones keep their new error. The broker is never touched.
    """
    consumer = Consumer(context, MemoryTransport("memory://dashboard-replay"))
    return await consumer.replay(list(letter_ids))


async def purge(context: BoundedContext, letter_ids: Sequence[str]) -> int:
    """Delete the named letters of the context's consumer group."""
    if not letter_ids:
        return 0
    async with context.async_engine.begin() as connection:
        result = await connection.execute(
            delete(dead_letters).where(
                _c.consumer == context.consumer_group, _c.letter_id.in_(list(letter_ids))
            )
        )
    return int(getattr(result, "rowcount", 0) or 0)


async def purge_matching(context: BoundedContext, chosen: LetterFilter) -> int:
    """Delete every letter ``chosen`` selects."""
    async with context.async_engine.begin() as connection:
        result = await connection.execute(
            delete(dead_letters).where(*chosen.conditions(context.consumer_group))
        )
    return int(getattr(result, "rowcount", 0) or 0)


def _moment(text: str | None) -> datetime | None:
    """An ISO 8601 time from a form (``datetime-local`` has no offset: UTC)."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _local(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
