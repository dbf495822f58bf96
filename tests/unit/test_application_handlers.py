"""Subscribing domain event handlers: annotations decide what they handle; cascades are bounded."""

from __future__ import annotations

from typing import ClassVar

import pytest
from sqlalchemy import select

from tests.conftest import ContextFactory
from tidings import (
    BoundedContext,
    CascadeDepthExceededError,
    ConfigurationError,
    DomainEvent,
    DomainEventHandler,
    IntegrationEvent,
)
from tidings.persistence.tables import outbox


class OrderPlaced(DomainEvent):
    order_id: str


class OrderCancelled(DomainEvent):
    order_id: str


class OrderPlacedByGuest(OrderPlaced):
    email: str


class StockReserved(DomainEvent):
    order_id: str


class StockReservedIntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = "tests.handlers.stock-reserved"

    order_id: str


class Journal(DomainEventHandler):
    def __init__(self) -> None:
        self.seen: list[DomainEvent] = []

    def handle(self, event: OrderPlaced | OrderCancelled) -> None:
        self.seen.append(event)


@pytest.fixture
def context() -> BoundedContext:
    return BoundedContext("orders", database_url="sqlite://")


def test_a_handler_without_an_annotation_is_refused_with_an_example(
    context: BoundedContext,
) -> None:
    class Unannotated(DomainEventHandler):
        def handle(self, event) -> None:  # type: ignore[no-untyped-def]
            pass

    with pytest.raises(ConfigurationError) as refused:
        context.subscribe(Unannotated())

    message = str(refused.value)
    assert "Unannotated.handle(event) has no type annotation" in message
    assert "handle(self, event: ProductPutOnSale)" in message


def test_a_handler_annotated_with_something_else_than_a_domain_event_is_refused(
    context: BoundedContext,
) -> None:
    class HandlesStrings(DomainEventHandler):
        def handle(self, event: str) -> None:
            pass

    with pytest.raises(ConfigurationError, match="annotated with <class 'str'>, which is not"):
        context.subscribe(HandlesStrings())


def test_a_handler_mixing_a_domain_event_and_another_type_is_refused(
    context: BoundedContext,
) -> None:
    class HandlesTooMuch(DomainEventHandler):
        def handle(self, event: OrderPlaced | int) -> None:
            pass

    with pytest.raises(ConfigurationError, match="not a DomainEvent subclass"):
        context.subscribe(HandlesTooMuch())


def test_a_handler_without_handle_or_without_a_parameter_is_refused(
    context: BoundedContext,
) -> None:
    class NoHandle(DomainEventHandler):
        pass

    class NoParameter(DomainEventHandler):
        def handle(self) -> None:
            pass

    with pytest.raises(ConfigurationError, match="has no handle\\(\\) method"):
        context.subscribe(NoHandle())
    with pytest.raises(ConfigurationError, match="takes no argument"):
        context.subscribe(NoParameter())


def test_a_union_annotation_subscribes_to_each_member(context: BoundedContext) -> None:
    journal = context.subscribe(Journal())
    placed, cancelled = OrderPlaced(order_id="o-1"), OrderCancelled(order_id="o-1")

    context.domain_events.publish(placed)
    context.domain_events.publish(cancelled)
    context.domain_events.publish(StockReserved(order_id="o-1"))

    assert journal.seen == [placed, cancelled]


def test_a_handler_of_an_event_class_also_handles_its_subclasses(
    context: BoundedContext,
) -> None:
    journal = context.subscribe(Journal())
    guest_order = OrderPlacedByGuest(order_id="o-2", email="a@example.com")

    context.domain_events.publish(guest_order)

    assert journal.seen == [guest_order]


def test_handlers_subscribed_later_are_reached_by_events_published_before(
    context: BoundedContext,
) -> None:
    first = context.subscribe(Journal())
    context.domain_events.publish(OrderPlaced(order_id="o-1"))
    second = context.subscribe(Journal())

    context.domain_events.publish(OrderPlaced(order_id="o-2"))

    assert len(first.seen) == 2
    assert len(second.seen) == 1


def test_an_async_handler_cannot_run_from_the_synchronous_producer(
    context: BoundedContext,
) -> None:
    class AsyncJournal(DomainEventHandler):
        async def handle(self, event: OrderPlaced) -> None:
            pass

    context.subscribe(AsyncJournal())

    with pytest.raises(ConfigurationError, match=r"ctx\.async_domain_events"):
        context.domain_events.publish(OrderPlaced(order_id="o-1"))


def test_one_handler_class_can_be_subscribed_after_commit_only_once(
    context: BoundedContext,
) -> None:
    context.subscribe(Journal(), after_commit=True)

    with pytest.raises(ConfigurationError, match="already subscribed after commit"):
        context.subscribe(Journal(), after_commit=True)


def test_publishing_an_event_with_after_commit_handlers_needs_a_transaction(
    context: BoundedContext,
) -> None:
    context.subscribe(Journal(), after_commit=True)

    with pytest.raises(Exception, match=r"publish it inside `with ctx\.transaction\(\):`"):
        context.domain_events.publish(OrderPlaced(order_id="o-1"))


class ReserveStockOnOrderPlaced(DomainEventHandler):
    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def handle(self, event: OrderPlaced) -> None:
        self._context.domain_events.publish(StockReserved(order_id=event.order_id))


class PublishStockReserved(DomainEventHandler):
    def __init__(self, context: BoundedContext) -> None:
        self._context = context
        self.events: list[StockReserved] = []

    def handle(self, event: StockReserved) -> None:
        self.events.append(event)
        self._context.integration_events.publish(
            StockReservedIntegrationEvent(order_id=event.order_id)
        )


class PlaceOrderAgainOnStockReserved(DomainEventHandler):
    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def handle(self, event: StockReserved) -> None:
        self._context.domain_events.publish(OrderPlaced(order_id=event.order_id))


def test_a_handler_publishing_another_domain_event_cascades_in_the_same_transaction(
    sqlite_url: str, make_context: ContextFactory
) -> None:
    context = make_context(sqlite_url, name="orders")
    context.subscribe(ReserveStockOnOrderPlaced(context))
    publisher = context.subscribe(PublishStockReserved(context))

    with context.transaction(correlation_id="checkout-1"):
        context.domain_events.publish(OrderPlaced(order_id="o-1"))

    (reserved,) = publisher.events
    with context.engine.connect() as connection:
        (row,) = connection.execute(select(outbox)).all()
    # The integration event's cause is the event whose handler published it.
    assert row.causation_id == str(reserved.event_id)
    assert row.correlation_id == "checkout-1"


def test_a_cycle_of_handlers_raises_cascade_depth_exceeded_and_writes_nothing(
    sqlite_url: str, make_context: ContextFactory
) -> None:
    context = make_context(sqlite_url, name="orders", max_cascade_depth=8)
    context.subscribe(ReserveStockOnOrderPlaced(context))
    context.subscribe(PublishStockReserved(context))
    context.subscribe(PlaceOrderAgainOnStockReserved(context))

    with (
        pytest.raises(CascadeDepthExceededError, match="nested 8 levels deep"),
        context.transaction(),
    ):
        context.domain_events.publish(OrderPlaced(order_id="o-1"))

    assert context.outbox_count() == 0


def test_a_cycle_outside_a_transaction_raises_cascade_depth_exceeded_too(
    context: BoundedContext,
) -> None:
    context.subscribe(ReserveStockOnOrderPlaced(context))
    context.subscribe(PlaceOrderAgainOnStockReserved(context))

    with pytest.raises(CascadeDepthExceededError):
        context.domain_events.publish(OrderPlaced(order_id="o-1"))


async def test_a_cycle_of_async_handlers_raises_cascade_depth_exceeded(
    context: BoundedContext,
) -> None:
    class PingOnOrderPlaced(DomainEventHandler):
        async def handle(self, event: OrderPlaced) -> None:
            await context.async_domain_events.publish(StockReserved(order_id=event.order_id))

    class PongOnStockReserved(DomainEventHandler):
        async def handle(self, event: StockReserved) -> None:
            await context.async_domain_events.publish(OrderPlaced(order_id=event.order_id))

    context.subscribe(PingOnOrderPlaced())
    context.subscribe(PongOnStockReserved())

    with pytest.raises(CascadeDepthExceededError):
        await context.async_domain_events.publish(OrderPlaced(order_id="o-1"))
