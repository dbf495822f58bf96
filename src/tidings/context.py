"""``BoundedContext``: the composition root of one bounded context."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from tidings.application.integration_producers import (
    AsyncIntegrationEventProducer,
    IntegrationEventProducer,
)
from tidings.application.introspection import handled_types
from tidings.application.producers import AsyncDomainEventProducer, DomainEventProducer
from tidings.application.query_bus import AsyncQueryBus, QueryBus, QueryHandlers
from tidings.application.retry import RetryPolicy
from tidings.application.subscriptions import DomainEventSubscriptions
from tidings.application.unit_of_work import UnitOfWork, new_current_unit_of_work
from tidings.causality.records import DEFAULT_CAUSAL_RETENTION
from tidings.causality.records import purge as purge_causal
from tidings.contracts.upcasting import Upcaster, Upcasters
from tidings.domain.aggregate import AggregateRoot
from tidings.errors import ConfigurationError, NoActiveTransactionError
from tidings.observability.tracing import messaging_system
from tidings.persistence.after_commit_work import PublicationLog
from tidings.persistence.engines import (
    READ_ONLY_OPTION,
    create_asyncio_engine,
    create_sync_engine,
)
from tidings.persistence.schema import create_tables, create_tables_async
from tidings.persistence.tables import outbox
from tidings.persistence.transaction import ContextRuntime, TransactionScope
from tidings.redaction import redact

H = TypeVar("H")

DEFAULT_BROKER_URL = "sqlite:///tidings-broker.db"


class BoundedContext:
    """One bounded context: its name, database, buses, producers and subscriptions.

    ::

        catalog = BoundedContext("catalog", database_url="sqlite:///catalog.db")
        catalog.subscribe(ProjectProductOnPutProductOnSale(project_product))
        catalog.subscribe(SendWelcomeMail(mailer), after_commit=True)

        with catalog.transaction():
            PutProductOnSale(repository, catalog.domain_events).execute("p-1")

    Everything needing I/O is created lazily, so a context can be declared at module
    level (``tidings relay examples.ecommerce.catalog:context``) at no cost.

    :param name: the context's name, the ``source`` of the events it publishes.
    :param database_url: SQLAlchemy URL of the context's own database; defaults to
        the SQLite file ``./<name>.db``. ``postgresql://`` and ``mysql://`` URLs get
        psycopg/asyncpg and pymysql/aiomysql unless the URL names a driver.
    :param broker_url: where the relay sends integration events and the consumer reads
        them; defaults to the embedded SQLite-file broker ``./tidings-broker.db``, which
        every context started in the same directory shares.
    :param consumer_group: the broker subscription this context's consumers share;
        defaults to ``name``.
    :param max_cascade_depth: how deep handlers may publish events from handlers
        before the chain is taken for a cycle.
    :param after_commit_retry: backoff of failing after-commit handlers.
    :param strict_publishing: raise :class:`~tidings.errors.PublishedFromUseCaseError`
        when a use case publishes an integration event itself instead of leaving it to
        an event handler; by default that is a
        :class:`~tidings.errors.PublishedFromUseCaseWarning`.
    :param engine_options: extra keyword arguments for ``create_engine``.
    :param trace_domain_handlers: run each inline domain event handler in a span of
        its own (named by the handler), when an OpenTelemetry SDK is configured; off
        by default, and free when off.
    :param causal_retention: how long the causal records (what the context published
        and handled, for ``tidings trace``) are kept; see :meth:`purge_causal_records`.
    """

    def __init__(
        self,
        name: str,
        *,
        database_url: str | None = None,
        broker_url: str | None = None,
        consumer_group: str | None = None,
        max_cascade_depth: int = 32,
        after_commit_retry: RetryPolicy | None = None,
        engine_options: dict[str, Any] | None = None,
        trace_domain_handlers: bool = False,
        causal_retention: timedelta = DEFAULT_CAUSAL_RETENTION,
        strict_publishing: bool = False,
    ) -> None:
        if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ConfigurationError(
                f"context name {name!r} must be non-empty letters, digits, '-', '_' or '.'; "
                "it becomes the CloudEvents source of the context's events"
            )
        if max_cascade_depth < 1:
            raise ConfigurationError("max_cascade_depth must be at least 1")
        self.name = name
        self.database_url = database_url or f"sqlite:///{name}.db"
        self.broker_url = broker_url or DEFAULT_BROKER_URL
        self.consumer_group = consumer_group or name
        self.causal_retention = causal_retention
        self._engine_options = dict(engine_options or {})
        self._engine: Engine | None = None
        self._async_engine: AsyncEngine | None = None
        self._current = new_current_unit_of_work(name)

        self.subscriptions = DomainEventSubscriptions(traced=trace_domain_handlers)
        self._query_handlers = QueryHandlers()
        self.integration_handlers: list[Any] = []
        self.upcasters = Upcasters()

        self.domain_events = DomainEventProducer(self.subscriptions, self._current)
        self.async_domain_events = AsyncDomainEventProducer(self.subscriptions, self._current)
        system = messaging_system(self.broker_url)
        self.strict_publishing = strict_publishing
        self.integration_events = IntegrationEventProducer(
            name, self._current, system, strict=strict_publishing
        )
        self.async_integration_events = AsyncIntegrationEventProducer(
            name, self._current, system, strict=strict_publishing
        )
        self.query_bus = QueryBus(self._query_handlers)
        self.async_query_bus = AsyncQueryBus(self._query_handlers)

        self._log = PublicationLog(self.subscriptions, after_commit_retry or RetryPolicy())
        self._runtime = ContextRuntime(
            current=self._current,
            engine=lambda: self.engine,
            async_engine=lambda: self.async_engine,
            domain_events=self.domain_events,
            async_domain_events=self.async_domain_events,
            publication_log=self._log,
            max_depth=max_cascade_depth,
        )

    def __repr__(self) -> str:
        # Passwords stay out of logs and tracebacks that show the context.
        return (
            f"BoundedContext({self.name!r}, database_url={redact(self.database_url)!r}, "
            f"broker_url={redact(self.broker_url)!r})"
        )

    # -- database -------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        """The synchronous SQLAlchemy engine of the context's database."""
        if self._engine is None:
            self._engine = create_sync_engine(self.database_url, **self._engine_options)
        return self._engine

    @property
    def async_engine(self) -> AsyncEngine:
        """The asyncio SQLAlchemy engine of the context's database."""
        if self._async_engine is None:
            self._async_engine = create_asyncio_engine(self.database_url, **self._engine_options)
        return self._async_engine

    def create_tables(self) -> list[str]:
        """Create the tidings tables (outbox, publication log, inbox) if missing."""
        return create_tables(self.engine)

    async def create_tables_async(self) -> list[str]:
        """Asyncio flavour of :meth:`create_tables`."""
        return await create_tables_async(self.async_engine)

    def purge_causal_records(self, older_than: timedelta | None = None) -> int:
        """Delete causal records older than ``older_than`` (default ``causal_retention``).

        Run it periodically (a cron job, a scheduled task); returns how many were deleted.
        """
        return purge_causal(
            self.engine, self.causal_retention if older_than is None else older_than
        )

    def dispose(self) -> None:
        """Close the connection pools (sync engine only; see :meth:`adispose`)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    async def adispose(self) -> None:
        """Close both connection pools."""
        if self._async_engine is not None:
            await self._async_engine.dispose()
            self._async_engine = None
        self.dispose()

    # -- transactions ---------------------------------------------------------------
    def transaction(
        self,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        connection: AsyncConnection | None = None,
    ) -> TransactionScope:
        """A unit of work: ``with ctx.transaction() as session`` (or ``async with``).

        Integration events published inside are written to the outbox atomically with
        the session's changes. ``correlation_id`` continues a flow started elsewhere
        (a consumer passes the incoming event's); by default a new one is made.
        Nested scopes join the outer one.

        ``connection`` (async only): run on this connection of the context's async
        engine instead of one from the pool. A loop running many transactions back to
        back keeps one, saving the checkout and its liveness ping each time; after a
        failure it should close it and open another.
        """
        return TransactionScope(self._runtime, correlation_id, causation_id, connection)

    def _unit_of_work(self) -> UnitOfWork:
        uow = self._current.get()
        if uow is None:
            raise NoActiveTransactionError(
                f"no transaction is open in context {self.name!r}: use "
                "`with ctx.transaction():` (or `async with`) around the use case"
            )
        return uow

    @property
    def session(self) -> Session:
        """The SQLAlchemy ``Session`` of the current transaction, for repositories.

        Inside an async transaction this is its synchronous facade, usable from plain
        handlers (which tidings runs through ``run_sync``).
        """
        uow = self._unit_of_work()
        if uow.session is not None:
            return uow.session  # type: ignore[no-any-return]
        return uow.async_session.sync_session  # type: ignore[no-any-return]

    @property
    def async_session(self) -> AsyncSession:
        """The ``AsyncSession`` of the current async transaction."""
        uow = self._unit_of_work()
        if uow.async_session is None:
            raise NoActiveTransactionError(
                "the current transaction is synchronous; use ctx.session, or open it with "
                "`async with ctx.transaction()`"
            )
        return uow.async_session  # type: ignore[no-any-return]

    @property
    def correlation_id(self) -> str:
        """The correlation id of the current transaction (the root use case's)."""
        return self._unit_of_work().correlation_id

    def track(self, aggregate: AggregateRoot) -> None:
        """Dispatch ``aggregate``'s recorded events at commit, for repositories not using
        the context's SQLAlchemy session (aggregates in that session are found alone)."""
        self._unit_of_work().track(aggregate)

    # -- wiring ---------------------------------------------------------------------
    def subscribe(self, handler: H, *, after_commit: bool = False) -> H:
        """Subscribe a domain or integration event handler; returns it.

        The handled class comes from ``handle``'s annotation. Domain event handlers run
        inside the publishing transaction, or with ``after_commit=True`` durably after
        it commits (retried on failure, resumed after a restart). Integration event
        handlers are run by the context's consumer.
        """
        kinds = {getattr(t, "__tidings_kind__", None) for t in _annotation_types(handler)}
        if kinds == {"integration"}:
            if after_commit:
                raise ConfigurationError(
                    "after_commit applies to domain event handlers; integration event "
                    "handlers already run after the producer's commit, through the broker"
                )
            self.integration_handlers.append(handler)
        else:
            self.subscriptions.add(handler, after_commit=after_commit)
        return handler

    def add_upcaster(self, event_type: str, from_version: int, upcaster: Upcaster) -> None:
        """Let this context's consumer read ``event_type`` v``from_version`` payloads as
        v``from_version + 1``: ``upcaster`` takes and returns the payload dict."""
        self.upcasters.register(event_type, from_version, upcaster)

    def register_query_handler(self, handler: H) -> H:
        """Register a query handler for the query class of its ``handle`` annotation."""
        self._query_handlers.register(handler)
        return handler

    # -- durable after-commit work ----------------------------------------------------
    def complete_pending_handlers(self, limit: int = 100) -> int:
        """Run due after-commit work (left by failures or a crash); returns how many completed."""
        with self.read_connection() as connection:
            rows = connection.execute(self._log.due_query(limit)).all()
        return self._runtime.run_after_commit(self._log.to_work(rows))

    async def acomplete_pending_handlers(self, limit: int = 100) -> int:
        """Asyncio flavour of :meth:`complete_pending_handlers`, for async handlers."""
        async with self.async_engine.connect() as connection:
            await connection.execution_options(**{READ_ONLY_OPTION: True})
            rows = (await connection.execute(self._log.due_query(limit))).all()
        return await self._runtime.arun_after_commit(self._log.to_work(rows))

    def purge_completed_handlers(self, older_than: timedelta = timedelta(days=7)) -> int:
        """Delete completed after-commit entries older than ``older_than``."""
        with Session(self.engine) as session, session.begin():
            return session.execute(self._log.purge_query(older_than)).rowcount  # type: ignore[attr-defined,no-any-return]

    def pending_handler_count(self) -> int:
        """How many after-commit entries are not completed yet."""
        with self.read_connection() as connection:
            return int(connection.execute(self._log.pending_count_query()).scalar_one())

    def outbox_count(self) -> int:
        """How many events the outbox holds that were not published yet."""
        with self.read_connection() as connection:
            query = select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
            return int(connection.execute(query).scalar_one())

    def read_connection(self) -> Connection:
        """A connection for reads that must not wait for (or block) the context's writers
        (on SQLite, plain BEGIN instead of BEGIN IMMEDIATE)."""
        return self.engine.connect().execution_options(**{READ_ONLY_OPTION: True})


def _annotation_types(handler: object) -> tuple[type, ...]:
    try:
        return handled_types(handler, object, "handler")
    except ConfigurationError:
        return ()
