"""The articles' "publishing both from the use case" mistake, detected at run time.

An integration event published while no handler runs (no domain event being handled,
no integration event or after-commit handler running) is a
``PublishedFromUseCaseWarning``; under ``strict_publishing=True`` a
``PublishedFromUseCaseError`` that rolls the use case back.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import pytest

from tests.support.consumer_app import ProductPriceChangedIntegrationEvent
from tests.support.consumer_infra import price_changed, structured
from tidings import (
    BoundedContext,
    DomainEvent,
    DomainEventHandler,
    IntegrationEvent,
    IntegrationEventHandler,
    PublishedFromUseCaseError,
    PublishedFromUseCaseWarning,
    UseCase,
)
from tidings.consumer import Consumer
from tidings.transports.base import Delivery
from tidings.transports.memory import MemoryTransport


class TicketOpened(DomainEvent):
    ticket_id: str


class TicketOpenedIntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = "tests.use-case-publish.ticket-opened"

    ticket_id: str


class OpenTicketAndTellEveryone(UseCase):
    """The mistake: the use case publishes the integration event itself."""

    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def execute(self, ticket_id: str) -> None:
        self._context.integration_events.publish(TicketOpenedIntegrationEvent(ticket_id=ticket_id))


class AsyncOpenTicketAndTellEveryone(UseCase):
    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    async def execute(self, ticket_id: str) -> None:
        await self._context.async_integration_events.publish(
            TicketOpenedIntegrationEvent(ticket_id=ticket_id)
        )


class OpenTicket(UseCase):
    """The articles' way: the use case publishes only the domain event."""

    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def execute(self, ticket_id: str) -> None:
        self._context.domain_events.publish(TicketOpened(ticket_id=ticket_id))


class AsyncOpenTicket(UseCase):
    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    async def execute(self, ticket_id: str) -> None:
        await self._context.async_domain_events.publish(TicketOpened(ticket_id=ticket_id))


class PublishTicketOpenedIntegrationEventOnTicketOpened(DomainEventHandler):
    publishes = (TicketOpenedIntegrationEvent,)

    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def handle(self, event: TicketOpened) -> None:
        self._context.integration_events.publish(
            TicketOpenedIntegrationEvent(ticket_id=event.ticket_id)
        )


class OpenTicketOnPriceChanged(IntegrationEventHandler):
    """An integration event handler that publishes an integration event in turn."""

    publishes = (TicketOpenedIntegrationEvent,)

    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    async def handle(self, event: ProductPriceChangedIntegrationEvent) -> None:
        await self._context.async_integration_events.publish(
            TicketOpenedIntegrationEvent(ticket_id=event.product_id)
        )


class OpenTicketsOnPriceChanged(IntegrationEventHandler):
    """The same, through ``handle_batch``."""

    publishes = (TicketOpenedIntegrationEvent,)

    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    async def handle(self, event: ProductPriceChangedIntegrationEvent) -> None:
        await self.handle_batch([event])

    async def handle_batch(self, events: Sequence[ProductPriceChangedIntegrationEvent]) -> None:
        for event in events:
            await self._context.async_integration_events.publish(
                TicketOpenedIntegrationEvent(ticket_id=event.product_id)
            )


def _context(tmp_path: Path, *, strict: bool = False) -> BoundedContext:
    context = BoundedContext(
        "support", database_url=f"sqlite:///{tmp_path / 'support.db'}", strict_publishing=strict
    )
    context.create_tables()
    return context


@pytest.fixture
def context(tmp_path: Path) -> Iterator[BoundedContext]:
    context = _context(tmp_path)
    yield context
    context.dispose()


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[BoundedContext]:
    context = _context(tmp_path, strict=True)
    yield context
    context.dispose()


@pytest.fixture
async def async_strict(tmp_path: Path) -> AsyncIterator[BoundedContext]:
    context = _context(tmp_path, strict=True)
    yield context
    await context.adispose()


def test_a_use_case_publishing_an_integration_event_warns_at_its_own_line(
    context: BoundedContext,
) -> None:
    expected = pytest.warns(PublishedFromUseCaseWarning, match="TicketOpenedIntegrationEvent")
    with expected as seen, context.transaction():
        OpenTicketAndTellEveryone(context).execute("t-1")

    assert seen[0].filename == __file__  # points at the use case, not at tidings
    assert context.outbox_count() == 1  # only a warning: the event is still published


def test_tests_can_turn_the_warning_into_an_error(context: BoundedContext) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("error", category=PublishedFromUseCaseWarning)
        with pytest.raises(PublishedFromUseCaseWarning), context.transaction():
            OpenTicketAndTellEveryone(context).execute("t-1")

    assert context.outbox_count() == 0


def test_strict_publishing_refuses_it_and_rolls_the_use_case_back(
    strict: BoundedContext,
) -> None:
    refused = pytest.raises(PublishedFromUseCaseError, match="from a domain event handler")
    with refused, strict.transaction():
        OpenTicketAndTellEveryone(strict).execute("t-1")

    assert strict.outbox_count() == 0


async def test_strict_publishing_refuses_it_in_async_use_cases_too(
    async_strict: BoundedContext,
) -> None:
    with pytest.raises(PublishedFromUseCaseError):
        async with async_strict.transaction():
            await AsyncOpenTicketAndTellEveryone(async_strict).execute("t-1")


def test_a_domain_event_handler_publishing_is_the_right_way(strict: BoundedContext) -> None:
    strict.subscribe(PublishTicketOpenedIntegrationEventOnTicketOpened(strict))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with strict.transaction():
            OpenTicket(strict).execute("t-1")

    assert strict.outbox_count() == 1


async def test_an_async_domain_event_handler_publishing_is_fine(
    async_strict: BoundedContext,
) -> None:
    async_strict.subscribe(PublishTicketOpenedIntegrationEventOnTicketOpened(async_strict))
    async with async_strict.transaction():
        await AsyncOpenTicket(async_strict).execute("t-1")

    assert async_strict.outbox_count() == 1


def test_an_after_commit_handler_publishing_is_fine(strict: BoundedContext) -> None:
    strict.subscribe(PublishTicketOpenedIntegrationEventOnTicketOpened(strict), after_commit=True)
    with strict.transaction():
        OpenTicket(strict).execute("t-1")

    assert strict.pending_handler_count() == 0  # it ran, and did not fail
    assert strict.outbox_count() == 1


def test_recorded_aggregate_events_dispatched_at_commit_count_as_handled(
    strict: BoundedContext,
) -> None:
    from tidings import AggregateRoot

    class Ticket(AggregateRoot):
        def open(self) -> None:
            self.record(TicketOpened(ticket_id="t-1"))

    strict.subscribe(PublishTicketOpenedIntegrationEventOnTicketOpened(strict))
    with strict.transaction():
        ticket = Ticket()
        ticket.open()
        strict.track(ticket)

    assert strict.outbox_count() == 1


@pytest.mark.parametrize("batch", [False, True], ids=["handle", "handle_batch"])
async def test_an_integration_event_handler_publishing_is_fine(
    async_strict: BoundedContext, batch: bool
) -> None:
    handler = OpenTicketsOnPriceChanged if batch else OpenTicketOnPriceChanged
    async_strict.subscribe(handler(async_strict))
    consumer = Consumer(async_strict, MemoryTransport("memory://unused"))
    events = [price_changed("product-1", 1)] + ([price_changed("product-2", 2)] if batch else [])

    await consumer.process([Delivery(structured(event)) for event in events])

    assert consumer.stats.dead_lettered == 0
    assert async_strict.outbox_count() == len(events)
