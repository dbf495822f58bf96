"""Transaction scopes: atomic handlers and outbox, nesting, sessions, after-commit work."""

from __future__ import annotations

from typing import ClassVar

import pytest
from sqlalchemy import Column, MetaData, String, Table, func, insert, select

from tests.conftest import ContextFactory
from tidings import (
    AggregateRoot,
    BoundedContext,
    ConfigurationError,
    DomainEvent,
    DomainEventHandler,
    IntegrationEvent,
    NoActiveTransactionError,
)
from tidings.persistence.tables import outbox

metadata = MetaData()
tickets = Table("unit_tickets", metadata, Column("id", String(36), primary_key=True))
audit = Table("unit_audit", metadata, Column("entry", String(100), primary_key=True))


class TicketOpened(DomainEvent):
    ticket_id: str


class TicketOpenedIntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = "tests.support-desk.ticket-opened"

    ticket_id: str


class AuditTicketOpened(DomainEventHandler):
    """A plain handler writing through ``ctx.session``."""

    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def handle(self, event: TicketOpened) -> None:
        self._context.session.execute(insert(audit).values(entry=f"opened {event.ticket_id}"))


class PublishTicketOpened(DomainEventHandler):
    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def handle(self, event: TicketOpened) -> None:
        self._context.integration_events.publish(
            TicketOpenedIntegrationEvent(ticket_id=event.ticket_id)
        )


class RefuseTicket(DomainEventHandler):
    def handle(self, event: TicketOpened) -> None:
        raise PermissionError(f"ticket {event.ticket_id} refused")


class Ticket(AggregateRoot):
    """An aggregate kept outside the ORM session: the unit of work must be told about it."""

    def __init__(self, ticket_id: str) -> None:
        self.ticket_id = ticket_id
        self.record(TicketOpened(ticket_id=ticket_id))


@pytest.fixture
def desk(sqlite_url: str, make_context: ContextFactory) -> BoundedContext:
    context = make_context(sqlite_url, name="desk")
    metadata.create_all(context.engine)
    return context


def _count(context: BoundedContext, table: Table) -> int:
    with context.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def test_publishing_an_integration_event_outside_a_transaction_is_a_clear_error(
    desk: BoundedContext,
) -> None:
    with pytest.raises(NoActiveTransactionError, match=r"with ctx\.transaction\(\):"):
        desk.integration_events.publish(TicketOpenedIntegrationEvent(ticket_id="t-1"))


async def test_the_async_integration_producer_refuses_to_publish_outside_a_transaction(
    desk: BoundedContext,
) -> None:
    with pytest.raises(NoActiveTransactionError):
        await desk.async_integration_events.publish(TicketOpenedIntegrationEvent(ticket_id="t"))


def test_publishing_a_domain_event_through_the_integration_producer_is_a_type_error(
    desk: BoundedContext,
) -> None:
    event = TicketOpened(ticket_id="t-1")

    with pytest.raises(TypeError, match="TicketOpened is not an IntegrationEvent"):
        desk.integration_events.publish(event)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not an IntegrationEvent"), desk.transaction():
        desk.integration_events.publish(event)  # type: ignore[arg-type]


def test_publishing_an_integration_event_through_the_domain_producer_is_a_type_error(
    desk: BoundedContext,
) -> None:
    with pytest.raises(TypeError, match="is not a DomainEvent"):
        desk.domain_events.publish(TicketOpenedIntegrationEvent(ticket_id="t"))  # type: ignore[arg-type]


def test_a_failing_handler_aborts_the_whole_use_case_atomically(desk: BoundedContext) -> None:
    desk.subscribe(AuditTicketOpened(desk))
    desk.subscribe(PublishTicketOpened(desk))
    desk.subscribe(RefuseTicket())

    with pytest.raises(PermissionError), desk.transaction() as session:
        session.execute(insert(tickets).values(id="t-1"))
        desk.domain_events.publish(TicketOpened(ticket_id="t-1"))

    assert _count(desk, tickets) == 0
    assert _count(desk, audit) == 0
    assert _count(desk, outbox) == 0


def test_nested_transactions_join_the_outer_one_and_commit_with_it(desk: BoundedContext) -> None:
    desk.subscribe(PublishTicketOpened(desk))

    with pytest.raises(RuntimeError), desk.transaction() as outer:
        with desk.transaction() as inner:
            assert inner is outer
            inner.execute(insert(tickets).values(id="t-1"))
            desk.domain_events.publish(TicketOpened(ticket_id="t-1"))
        # Leaving the inner scope committed nothing: the outer failure undoes it all.
        assert desk.outbox_count() == 0
        raise RuntimeError("outer use case fails")

    assert _count(desk, tickets) == 0
    assert _count(desk, outbox) == 0

    with desk.transaction(), desk.transaction() as session:
        session.execute(insert(tickets).values(id="t-2"))
        desk.domain_events.publish(TicketOpened(ticket_id="t-2"))

    assert _count(desk, tickets) == 1
    assert _count(desk, outbox) == 1


def test_the_session_is_only_available_inside_a_transaction(desk: BoundedContext) -> None:
    with pytest.raises(NoActiveTransactionError, match="no transaction is open"):
        _ = desk.session
    with desk.transaction() as session:
        assert desk.session is session
        with pytest.raises(NoActiveTransactionError, match="synchronous"):
            _ = desk.async_session


async def test_sync_and_async_transactions_do_not_join_each_other(desk: BoundedContext) -> None:
    async with desk.transaction():
        with (
            pytest.raises(ConfigurationError, match="cannot join an async one"),
            desk.transaction(),
        ):
            pass
    with (
        desk.transaction(),
        pytest.raises(ConfigurationError, match="cannot join a synchronous one"),
    ):
        async with desk.transaction():
            pass


async def test_plain_handlers_run_from_the_async_producer_can_use_the_sync_session(
    desk: BoundedContext,
) -> None:
    desk.subscribe(AuditTicketOpened(desk))
    desk.subscribe(PublishTicketOpened(desk))

    async with desk.transaction() as session:
        await session.execute(insert(tickets).values(id="t-1"))
        await desk.async_domain_events.publish(TicketOpened(ticket_id="t-1"))

    assert _count(desk, audit) == 1
    assert _count(desk, outbox) == 1
    await desk.adispose()


def test_aggregates_outside_the_session_are_dispatched_at_commit_when_tracked(
    desk: BoundedContext,
) -> None:
    desk.subscribe(AuditTicketOpened(desk))

    with desk.transaction():
        desk.track(Ticket("t-1"))
        Ticket("t-untracked")

    with desk.engine.connect() as connection:
        assert list(connection.execute(select(audit.c.entry)).scalars()) == ["opened t-1"]


class NotifyAgentAfterCommit(DomainEventHandler):
    """After commit, in a transaction of its own, publishes an integration event."""

    def __init__(self, context: BoundedContext) -> None:
        self._context = context
        self.saw_committed_ticket: list[bool] = []

    def handle(self, event: TicketOpened) -> None:
        query = select(func.count()).where(tickets.c.id == event.ticket_id)
        self.saw_committed_ticket.append(self._context.session.execute(query).scalar_one() == 1)
        self._context.integration_events.publish(
            TicketOpenedIntegrationEvent(ticket_id=event.ticket_id)
        )


def test_after_commit_handlers_run_after_commit_in_their_own_transaction(
    desk: BoundedContext,
) -> None:
    handler = desk.subscribe(NotifyAgentAfterCommit(desk), after_commit=True)
    event = TicketOpened(ticket_id="t-1")

    with desk.transaction(correlation_id="call-7") as session:
        session.execute(insert(tickets).values(id="t-1"))
        desk.domain_events.publish(event)
        assert handler.saw_committed_ticket == []

    assert handler.saw_committed_ticket == [True]
    with desk.engine.connect() as connection:
        (row,) = connection.execute(select(outbox)).all()
    assert (row.correlation_id, row.causation_id) == ("call-7", str(event.event_id))
    assert desk.pending_handler_count() == 0


async def test_async_after_commit_handlers_run_after_an_async_commit(
    desk: BoundedContext,
) -> None:
    handled: list[str] = []

    class IndexTicket(DomainEventHandler):
        async def handle(self, event: TicketOpened) -> None:
            await desk.async_session.execute(
                insert(audit).values(entry=f"indexed {event.ticket_id}")
            )
            handled.append(event.ticket_id)

    desk.subscribe(IndexTicket(), after_commit=True)

    async with desk.transaction():
        await desk.async_domain_events.publish(TicketOpened(ticket_id="t-1"))

    assert handled == ["t-1"]
    assert _count(desk, audit) == 1
    assert desk.pending_handler_count() == 0
    await desk.adispose()


def test_counting_inside_an_open_transaction_does_not_wait_for_its_write_lock(
    desk: BoundedContext,
) -> None:
    desk.subscribe(PublishTicketOpened(desk))

    with desk.transaction() as session:
        session.execute(insert(tickets).values(id="t-1"))
        desk.domain_events.publish(TicketOpened(ticket_id="t-1"))
        session.flush()
        # SQLite: the transaction holds the write lock; reads by the context must not wait.
        assert desk.outbox_count() == 0
        assert desk.pending_handler_count() == 0
        assert desk.complete_pending_handlers() == 0

    assert desk.outbox_count() == 1
