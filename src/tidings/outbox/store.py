"""The relay's SQL: reading pending rows in order, marking them, reporting status."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Integer, any_, bindparam, case, delete, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from tidings.causality.records import record_published, relay_marks
from tidings.contracts.envelope import OutboxRow
from tidings.outbox.partitions import Ownership, RelayMember, relay_overview
from tidings.persistence.engines import READ_ONLY_OPTION
from tidings.persistence.tables import outbox
from tidings.redaction import describe_error

_c = outbox.c
_columns = [c for c in outbox.c if c.name not in ("attempts", "last_error", "available_at")]
# What the relay needs to build CloudEvents: every column it reads is converted per row,
# so created_at and published_at (two timestamp conversions each) stay in the table.
_relay_columns = [c for c in _columns if c.name not in ("created_at", "published_at", "trigger_id")]


#: ``last_error`` of an archived row that no subscription took when it was published
#: (whatever the retention): ``tidings outbox replay --unrouted`` re-sends these.
UNROUTED_PREFIX = "unrouted: "


class Retention(StrEnum):
    """What happens to an outbox row once the broker confirmed it."""

    DELETE = "delete"
    """Delete it: the outbox stays small (the default)."""
    ARCHIVE = "archive"
    """Keep it with ``published_at`` set, for replay to new subscribers; purge by age."""


@dataclass(frozen=True, slots=True)
class StuckRow:
    position: int
    event_id: str
    event_type: str
    attempts: int
    last_error: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    """What ``tidings outbox status`` reports."""

    pending: int
    oldest_pending_at: datetime | None
    archived: int | None
    """Archived rows; None when not counted (``status(count_archived=False)``)."""
    unrouted: int | None
    """Archived rows no subscription took (see ``tidings outbox replay --unrouted``);
    None when not counted."""
    stuck: list[StuckRow]
    publish_rate_per_s: float | None
    """Of the live relays together; None before any relay ran."""
    relay_owner: str | None
    """The relay holding the most partitions (or the last one seen)."""
    relay_lease_expires_at: datetime | None
    partitions: int | None = None
    """P, the outbox's partition count (None before ``db init`` or a relay made them)."""
    relays: tuple[RelayMember, ...] = ()
    """Every relay process seen lately, live ones first, with the partitions it holds."""

    @property
    def relay_lease_expired(self) -> bool:
        """The named relay owner's lease has run out: that relay stopped or hangs, and
        the next relay to start takes over. Only a current lease means a relay is at work."""
        expires = self.relay_lease_expires_at
        return expires is not None and expires <= datetime.now(UTC)

    @property
    def lag_seconds(self) -> float:
        """Age of the oldest pending event: how far behind the relay is."""
        if self.oldest_pending_at is None:
            return 0.0
        return max((datetime.now(UTC) - self.oldest_pending_at).total_seconds(), 0.0)


class OutboxStore:
    """Asyncio access to one context's outbox table."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._held: dict[str, AsyncConnection] = {}
        pending = _c.published_at.is_(None)
        available = (_c.available_at.is_(None)) | (_c.available_at <= bindparam("now"))
        fetch = (
            select(*_relay_columns)
            .where(pending, available, _c.position > bindparam("after"))
            .order_by(_c.position)
            .limit(bindparam("limit"))
        )
        # A relay owning some partitions of P reads only theirs; one owning all of them
        # reads as a single relay always did (the statement without the filter).
        partition = _c.partition_slot % bindparam("partitions", type_=Integer)
        mine = (
            partition == any_(bindparam("owned", type_=ARRAY(Integer)))
            if self._postgres
            else partition.in_(bindparam("owned", expanding=True))
        )
        self._fetches = {False: fetch, True: fetch.where(mine)}
        # The same query as the driver runs it: on PostgreSQL the relay's read goes
        # straight to asyncpg, whose records it indexes by name like SQLAlchemy's rows,
        # without a result row built around each (a third of the relay's cost per event).
        self._native = {}
        for filtered, statement in self._fetches.items():
            compiled = statement.compile(dialect=engine.dialect)
            self._native[filtered] = (str(compiled), compiled.positiontup or [])
        self._native_fetch = self._postgres and engine.dialect.driver == "asyncpg"
        in_batch: ColumnElement[bool] = _c.position.in_(bindparam("positions", expanding=True))
        if self._postgres:
            # One array parameter: the statement text (and its cached plan) stays the same
            # for every batch, where IN would render one placeholder per row.
            in_batch = _c.position == any_(bindparam("positions", type_=ARRAY(BigInteger)))
        # Marking a confirmed row also writes its published record (tidings trace).
        self._marks = {
            Retention.DELETE: relay_marks(engine.dialect, in_batch, archive=False),
            Retention.ARCHIVE: relay_marks(engine.dialect, in_batch, archive=True),
        }
        # Unrouted rows are recorded as published too: a trace shows them, with no
        # subscriber, instead of losing them from the causal records.
        self._record_unrouted = record_published(engine.dialect, in_batch)
        self._unrouted = (
            update(outbox)
            .where(in_batch)
            .values(published_at=bindparam("now"), last_error=bindparam("error"))
        )
        self._failure = (
            update(outbox)
            .where(in_batch)
            .values(attempts=_c.attempts + 1, last_error=bindparam("error"))
        )

    async def fetch_pending(
        self, limit: int, after: int = 0, *, ownership: Ownership | None = None
    ) -> Sequence[OutboxRow]:
        """Up to ``limit`` unpublished rows past position ``after``, in position order;
        only those of the partitions owned, given an ``ownership`` of some of them."""
        parameters: dict[str, Any] = {"now": datetime.now(UTC), "after": after, "limit": limit}
        filtered = ownership is not None and not ownership.owns_all
        if ownership is not None and filtered:
            if not ownership.owned:
                return []
            parameters["partitions"] = ownership.partitions
            parameters["owned"] = sorted(ownership.owned)
        statement = self._fetches[filtered]
        if self._native_fetch:
            async with self._single_statement("read") as connection:
                return await self._fetch_natively(connection, parameters, filtered)
        if self._postgres:
            async with self._single_statement("read") as connection:
                return (await connection.execute(statement, parameters)).mappings().all()
        async with self.engine.connect() as connection:
            # SQLite: a deferred (read) transaction. Taking the write lock to read, as
            # other transactions there do, would make producers' commits and the
            # relay's reads wait for each other.
            await connection.execution_options(**{READ_ONLY_OPTION: True})
            result = await connection.execute(statement, parameters)
            rows = result.mappings().all()
            await connection.rollback()
        return rows

    async def _fetch_natively(
        self, connection: AsyncConnection, parameters: dict[str, Any], filtered: bool
    ) -> Sequence[OutboxRow]:
        driver: Any = (await connection.get_raw_connection()).driver_connection
        sql, order = self._native[filtered]
        arguments = [parameters[name] for name in order]
        try:
            rows: Sequence[OutboxRow] = await driver.fetch(sql, *arguments)
        except Exception as exc:
            # What SQLAlchemy would raise: the relay retries database errors with backoff.
            raise DBAPIError(sql, arguments, exc) from exc
        return rows

    async def mark_published(self, positions: list[int], retention: Retention) -> None:
        """Delete or archive the rows the broker confirmed, recording them as published."""
        parameters = {"positions": positions, "now": datetime.now(UTC)}
        async with self._single_statement("write") as connection:
            for statement in self._marks[retention]:
                await connection.execute(statement, parameters)

    async def mark_unrouted(self, positions: list[int], reason: str) -> None:
        """Archive rows the broker routed to no subscription, even with retention
        ``delete``: ``tidings outbox replay --unrouted`` can send them again later."""
        error = (UNROUTED_PREFIX + reason)[:2000]
        parameters = {"positions": positions, "now": datetime.now(UTC), "error": error}
        async with self._single_statement("write") as connection:
            await connection.execute(self._record_unrouted, parameters)
            await connection.execute(self._unrouted, parameters)

    async def clear_unrouted(self, positions: list[int]) -> None:
        """Forget the unrouted mark of rows a replay got a subscription to take."""
        async with self.engine.begin() as connection:
            await connection.execute(
                update(outbox).where(_c.position.in_(positions)).values(last_error=None)
            )

    async def record_failure(self, positions: list[int], error: BaseException) -> None:
        """Count a failed attempt on rows, keeping the error for ``outbox status``."""
        message = describe_error(error)[:2000]
        async with self._single_statement("write") as connection:
            await connection.execute(self._failure, {"positions": positions, "error": message})

    async def close(self) -> None:
        """Give back the connections kept between batches."""
        held, self._held = self._held, {}
        for connection in held.values():
            with contextlib.suppress(Exception):
                await connection.close()

    @contextlib.asynccontextmanager
    async def _single_statement(self, slot: str) -> AsyncIterator[AsyncConnection]:
        """A connection to run one statement on, atomically.

        On PostgreSQL the store keeps one autocommit connection per slot ("read",
        "write") between batches: a statement then costs one round trip, where a pooled
        transaction costs four (pre-ping, BEGIN, statement, COMMIT), and a single
        statement is atomic on its own. A connection is taken out of ``_held`` while in
        use (concurrent callers get their own) and dropped after any error, so the next
        call starts on a fresh one. Elsewhere: a pooled transaction, as before.
        """
        if not self._postgres:
            async with self.engine.begin() as pooled:
                yield pooled
            return
        connection = self._held.pop(slot, None)
        if connection is None or connection.closed or connection.invalidated:
            connection = await self.engine.connect()
            await connection.execution_options(isolation_level="AUTOCOMMIT")
        try:
            yield connection
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        if slot in self._held:  # a concurrent caller put one back first
            await connection.close()
        else:
            self._held[slot] = connection

    async def archived_since(
        self, since: datetime, limit: int, after: int, *, unrouted_only: bool = False
    ) -> Sequence[RowMapping]:
        """Archived rows created at or after ``since``, past ``after``, in position order
        (only those no subscription took, with ``unrouted_only``)."""
        query = (
            select(*_columns)
            .where(_c.published_at.is_not(None), _c.created_at >= since, _c.position > after)
            .order_by(_c.position)
            .limit(limit)
        )
        if unrouted_only:
            query = query.where(_c.last_error.startswith(UNROUTED_PREFIX, autoescape=True))
        async with self.engine.connect() as connection:
            return (await connection.execute(query)).mappings().all()

    async def purge_archived(self, older_than: timedelta) -> int:
        """Delete archived rows published more than ``older_than`` ago."""
        cutoff = datetime.now(UTC) - older_than
        async with self.engine.begin() as connection:
            result = await connection.execute(delete(outbox).where(_c.published_at < cutoff))
            return int(getattr(result, "rowcount", 0) or 0)

    async def status(self, stuck_limit: int = 10, *, count_archived: bool = True) -> OutboxStatus:
        """Pending count, lag, stuck rows, and the relays with their partitions and rates.

        Every query is served by an index except the archived count, which reads
        every archived row: pass ``count_archived=False`` where that is too slow (the
        dashboard does, so its overview stays fast with millions of archived rows).
        """
        pending = _c.published_at.is_(None)
        async with self.engine.connect() as connection:
            count = (
                await connection.execute(select(func.count()).select_from(outbox).where(pending))
            ).scalar_one()
            # The relay sends in position order, so the first pending row is the oldest
            # one waiting; read through the pending index instead of every pending row.
            oldest = (
                await connection.execute(
                    select(_c.created_at).where(pending).order_by(_c.position).limit(1)
                )
            ).scalar()
            archived = unrouted = None
            if count_archived:
                archived, unrouted = (
                    await connection.execute(
                        select(
                            func.count(),
                            # SUM(CASE ...), not COUNT(...) FILTER: MariaDB has no FILTER.
                            func.coalesce(
                                func.sum(
                                    case(
                                        (
                                            _c.last_error.startswith(
                                                UNROUTED_PREFIX, autoescape=True
                                            ),
                                            1,
                                        ),
                                        else_=0,
                                    )
                                ),
                                0,
                            ),
                        )
                        .select_from(outbox)
                        .where(_c.published_at.is_not(None))
                    )
                ).one()
            stuck_rows: Sequence[Any] = []
            if stuck_limit > 0:
                stuck_rows = (
                    await connection.execute(
                        select(
                            _c.position,
                            _c.event_id,
                            _c.event_type,
                            _c.attempts,
                            _c.last_error,
                            _c.created_at,
                        )
                        .where(pending, _c.attempts > 0)
                        .order_by(_c.position)
                        .limit(stuck_limit)
                    )
                ).all()
            partitions, relays = await connection.run_sync(relay_overview)
        live = [relay for relay in relays if not relay.expired]
        first = relays[0] if relays else None
        return OutboxStatus(
            pending=int(count),
            oldest_pending_at=_as_aware(oldest),
            archived=None if archived is None else int(archived),
            unrouted=None if unrouted is None else int(unrouted),
            stuck=[StuckRow(*row) for row in stuck_rows],
            publish_rate_per_s=sum(r.rate_per_s for r in live) if relays else None,
            relay_owner=first.owner if first else None,
            relay_lease_expires_at=first.expires_at if first else None,
            partitions=partitions,
            relays=tuple(relays),
        )


def _as_aware(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
    return value  # type: ignore[no-any-return]
