"""Transaction scopes: one unit of work per ``with``/``async with ctx.transaction()``.

Commit order, the contract of guarantee 1 and 2:
1. events recorded on known aggregates are dispatched (repeatedly, since handlers may
   record more), still inside the transaction;
2. outbox rows and after-commit work are inserted, in the same transaction;
3. the transaction commits; only then
4. after-commit work runs, each in its own transaction that also marks it complete.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from sqlalchemy import Engine, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from tidings.application.producers import AsyncDomainEventProducer, DomainEventProducer
from tidings.application.unit_of_work import UnitOfWork
from tidings.domain.aggregate import Recorder, listen_for_recorded_events, stop_listening
from tidings.domain.ids import uuid7
from tidings.errors import ConfigurationError
from tidings.observability.metrics import count_rows
from tidings.observability.tracing import attached
from tidings.persistence.after_commit_work import PendingWork, PublicationLog
from tidings.persistence.tables import outbox
from tidings.persistence.tables import publication_log as log_table
from tidings.redaction import redact

logger = logging.getLogger("tidings.after_commit")

_insert_outbox = insert(outbox)


class ContextRuntime:
    """What a transaction scope needs from its bounded context, engines created lazily."""

    def __init__(
        self,
        *,
        current: ContextVar[UnitOfWork | None],
        engine: Callable[[], Engine],
        async_engine: Callable[[], AsyncEngine],
        domain_events: DomainEventProducer,
        async_domain_events: AsyncDomainEventProducer,
        publication_log: PublicationLog,
        max_depth: int,
    ) -> None:
        self.current = current
        self._engine = engine
        self._async_engine = async_engine
        self.domain_events = domain_events
        self.async_domain_events = async_domain_events
        self.log = publication_log
        self.max_depth = max_depth

    def new_unit_of_work(
        self,
        correlation_id: str | None,
        causation_id: str | None,
        in_handler: bool,
        **sessions: Any,
    ) -> UnitOfWork:
        return UnitOfWork(
            correlation_id=correlation_id or str(uuid7()),
            causation_id=causation_id,
            max_depth=self.max_depth,
            in_handler=in_handler,
            **sessions,
        )

    def open_session(self) -> Session:
        return Session(self._engine(), expire_on_commit=False)

    def open_async_session(self, connection: AsyncConnection | None = None) -> AsyncSession:
        return AsyncSession(connection or self._async_engine(), expire_on_commit=False)

    # -- sync ---------------------------------------------------------------------
    def commit(self, uow: UnitOfWork) -> list[PendingWork]:
        producer = self.domain_events
        while events := uow.pull_aggregate_events():
            for event in events:
                producer.publish(event)
        session: Session = uow.session
        writes, work = self._pending_writes(uow)
        for statement, params in writes:
            session.execute(statement, params)
        session.commit()
        if uow.outbox:
            count_rows("published", uow.outbox)
        return work

    def run_after_commit(self, work: list[PendingWork]) -> int:
        return sum(self._run_one(item) for item in work)

    def _run_one(self, item: PendingWork) -> bool:
        scope = TransactionScope(
            self, item.correlation_id, str(item.event.event_id), in_handler=True
        )
        try:
            with attached(item.trace_context), scope as session:
                claimed = session.execute(self.log.claim, {"p_entry_id": item.entry_id})
                if _rowcount(claimed) == 0:
                    return False  # completed meanwhile by another worker
                if item.subscription.is_async:
                    raise ConfigurationError(
                        f"{item.subscription.handler_id} is async; its after-commit work runs "
                        "from async transactions or ctx.acomplete_pending_handlers()"
                    )
                item.subscription.handle(item.event)
                session.execute(self.log.complete, {"p_entry_id": item.entry_id, "p_now": _now()})
            return True
        except Exception as error:
            self._record_failure(item, error)
            return False

    def _record_failure(self, item: PendingWork, error: Exception) -> None:
        logger.warning(
            "after-commit handler %s failed on %s %s: %s; it will be retried",
            item.subscription.handler_id,
            type(item.event).__name__,
            item.event.event_id,
            redact(repr(error)),
        )
        try:
            with Session(self._engine()) as session, session.begin():
                attempts = self._failures(session.execute, item)
                session.execute(self.log.failure_values(item, attempts, error))
        except Exception:
            logger.exception("could not record the failure of after-commit work %s", item.entry_id)

    def _failures(self, execute: Callable[..., Any], item: PendingWork) -> int:
        row = execute(
            select(log_table.c.attempts).where(log_table.c.entry_id == item.entry_id)
        ).scalar_one_or_none()
        return int(row or 0) + 1

    # -- async --------------------------------------------------------------------
    async def acommit(self, uow: UnitOfWork) -> list[PendingWork]:
        producer = self.async_domain_events
        while events := uow.pull_aggregate_events():
            for event in events:
                await producer.publish(event)
        session: AsyncSession = uow.async_session
        writes, work = self._pending_writes(uow)
        for statement, params in writes:
            await session.execute(statement, params)
        await session.commit()
        if uow.outbox:
            count_rows("published", uow.outbox)
        return work

    async def arun_after_commit(self, work: list[PendingWork]) -> int:
        done = 0
        for item in work:
            done += await self._arun_one(item)
        return done

    async def _arun_one(self, item: PendingWork) -> bool:
        scope = TransactionScope(
            self, item.correlation_id, str(item.event.event_id), in_handler=True
        )
        try:
            with attached(item.trace_context):
                async with scope as session:
                    result = await session.execute(self.log.claim, {"p_entry_id": item.entry_id})
                    if _rowcount(result) == 0:
                        return False
                    if item.subscription.is_async:
                        await item.subscription.handle(item.event)
                    else:
                        await session.run_sync(lambda _s: item.subscription.handle(item.event))
                    await session.execute(
                        self.log.complete, {"p_entry_id": item.entry_id, "p_now": _now()}
                    )
            return True
        except Exception as error:
            await self._arecord_failure(item, error)
            return False

    async def _arecord_failure(self, item: PendingWork, error: Exception) -> None:
        logger.warning(
            "after-commit handler %s failed on %s %s: %s; it will be retried",
            item.subscription.handler_id,
            type(item.event).__name__,
            item.event.event_id,
            redact(repr(error)),
        )
        try:
            async with AsyncSession(self._async_engine()) as session, session.begin():
                attempts = await session.run_sync(lambda s: self._failures(s.execute, item))
                await session.execute(self.log.failure_values(item, attempts, error))
        except Exception:
            logger.exception("could not record the failure of after-commit work %s", item.entry_id)

    def _pending_writes(self, uow: UnitOfWork) -> tuple[list[tuple[Any, Any]], list[PendingWork]]:
        """The outbox and publication-log inserts, written last in the transaction.

        Outbox positions come from a sequence at insert time. The session autoflushes
        the aggregates' changes before executing these inserts, so a transaction
        changing an aggregate that a concurrent one has changed first waits for that
        one's commit before it takes its positions: per aggregate (partition key),
        positions follow commit order and the relay delivers the last committed state
        last (tests/integration/test_core_concurrency.py).
        """
        writes: list[tuple[Any, Any]] = []
        if uow.outbox:
            rows = uow.outbox
            # A single row takes the plain execute path: cheaper than executemany.
            writes.append((_insert_outbox, rows[0] if len(rows) == 1 else rows))
        work: list[PendingWork] = []
        if uow.after_commit:
            log_rows, work = self.log.record(uow)
            writes.append((self.log.insert, log_rows))
        return writes, work


def _rowcount(result: Any) -> int:
    """Rows an UPDATE matched (``Result`` is typed without it; ``CursorResult`` has it)."""
    return int(result.rowcount)


def _now() -> datetime:
    return datetime.now(UTC)


class TransactionScope:
    """``with ctx.transaction() as session`` or ``async with ctx.transaction() as session``.

    Nested scopes join the outer transaction. Leaving with an exception rolls back
    everything: aggregate changes, outbox rows and after-commit work alike.
    """

    __slots__ = (
        "_causation_id",
        "_connection",
        "_correlation_id",
        "_in_handler",
        "_joined",
        "_recording",
        "_rt",
        "_token",
        "_uow",
    )

    def __init__(
        self,
        runtime: ContextRuntime,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        connection: AsyncConnection | None = None,
        *,
        in_handler: bool = False,
    ) -> None:
        self._rt = runtime
        self._in_handler = in_handler
        self._correlation_id = correlation_id
        self._causation_id = causation_id
        self._connection = connection
        self._joined = False
        self._uow: UnitOfWork | None = None
        self._token: Token[UnitOfWork | None] | None = None
        self._recording: Token[Recorder | None] | None = None

    def _join(self, session: Any, other_kind: str) -> Any:
        if session is None:
            raise ConfigurationError(
                f"this transaction cannot join {other_kind} one open in the same context; "
                "use `with ctx.transaction()` in synchronous code and `async with` in async code"
            )
        self._joined = True
        return session

    def _begin(self, **sessions: Any) -> None:
        uow = self._rt.new_unit_of_work(
            self._correlation_id, self._causation_id, self._in_handler, **sessions
        )
        self._uow = uow
        self._token = self._rt.current.set(uow)
        self._recording = listen_for_recorded_events(uow.keep_alive)

    def _leave(self) -> None:
        assert self._token is not None and self._recording is not None
        self._rt.current.reset(self._token)
        stop_listening(self._recording)

    def __enter__(self) -> Session:
        if self._connection is not None:
            raise ConfigurationError(
                "a connection is given to async transactions only: `async with "
                "ctx.transaction(connection=...)`"
            )
        current = self._rt.current.get()
        if current is not None:
            return self._join(current.session, "an async")  # type: ignore[no-any-return]
        session = self._rt.open_session()
        self._begin(session=session)
        return session

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._joined:
            return
        assert self._uow is not None
        uow, session = self._uow, self._uow.session
        work: list[PendingWork] = []
        try:
            if exc_type is None:
                try:
                    work = self._rt.commit(uow)
                except BaseException:
                    session.rollback()
                    raise
            else:
                session.rollback()
        finally:
            self._leave()
            session.close()
        if work:
            self._rt.run_after_commit(work)

    async def __aenter__(self) -> AsyncSession:
        current = self._rt.current.get()
        if current is not None:
            return self._join(current.async_session, "a synchronous")  # type: ignore[no-any-return]
        session = self._rt.open_async_session(self._connection)
        self._begin(async_session=session)
        return session

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._joined:
            return
        assert self._uow is not None
        uow, session = self._uow, self._uow.async_session
        work: list[PendingWork] = []
        try:
            if exc_type is None:
                try:
                    work = await self._rt.acommit(uow)
                except BaseException:
                    await session.rollback()
                    raise
            else:
                await session.rollback()
        finally:
            self._leave()
            await session.close()
        if work:
            await self._rt.arun_after_commit(work)
