"""Seed 001's ordering example: starting an order makes its user a buyer, in one transaction.

The Order aggregate records ``OrderStartedDomainEvent``; a domain event handler creates
the Buyer aggregate. Neither the order service nor the Order aggregate knows about
buyers: the only link is the event, dispatched when the unit of work commits.
"""

from __future__ import annotations

import pytest
from sqlalchemy import MetaData, String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tests.conftest import ContextFactory
from tidings import AggregateRoot, BoundedContext, DomainEvent, DomainEventHandler, UseCase

# The articles' scenarios publish integration events from domain event handlers only.
pytestmark = pytest.mark.filterwarnings("error::tidings.PublishedFromUseCaseWarning")


class OrderingModel(DeclarativeBase):
    metadata = MetaData()


class OrderStartedDomainEvent(DomainEvent):
    order_id: str
    user_id: str


class OrderConfirmedDomainEvent(DomainEvent):
    order_id: str


class BuyerCreatedDomainEvent(DomainEvent):
    user_id: str


class Order(AggregateRoot, OrderingModel):
    __tablename__ = "ordering_orders"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(20))

    @classmethod
    def start(cls, order_id: str, user_id: str) -> Order:
        order = cls(id=order_id, user_id=user_id, status="started")
        order.record(OrderStartedDomainEvent(order_id=order_id, user_id=user_id))
        return order

    def confirm(self) -> None:
        self.status = "confirmed"
        self.record(OrderConfirmedDomainEvent(order_id=self.id))


class Buyer(AggregateRoot, OrderingModel):
    __tablename__ = "ordering_buyers"

    user_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    confirmed_orders: Mapped[int] = mapped_column(default=0)

    def __init__(self, user_id: str) -> None:
        super().__init__(user_id=user_id, confirmed_orders=0)
        self.record(BuyerCreatedDomainEvent(user_id=user_id))


class StartOrder(UseCase):
    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def execute(self, order_id: str, user_id: str) -> None:
        self._context.session.add(Order.start(order_id, user_id))


class ConfirmOrder(UseCase):
    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def execute(self, order_id: str) -> None:
        self._context.session.get_one(Order, order_id).confirm()


class CreateBuyerOnOrderStarted(DomainEventHandler):
    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def handle(self, event: OrderStartedDomainEvent) -> None:
        session = self._context.session
        if session.get(Buyer, event.user_id) is None:
            session.add(Buyer(event.user_id))


class CountConfirmedOrdersOfBuyer(DomainEventHandler):
    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def handle(self, event: OrderConfirmedDomainEvent) -> None:
        session = self._context.session
        order = session.get_one(Order, event.order_id)
        session.get_one(Buyer, order.user_id).confirmed_orders += 1


class Welcomes(DomainEventHandler):
    def __init__(self) -> None:
        self.user_ids: list[str] = []

    def handle(self, event: BuyerCreatedDomainEvent) -> None:
        self.user_ids.append(event.user_id)


@pytest.fixture
def ordering(database_url: str, make_context: ContextFactory) -> BoundedContext:
    context = make_context(database_url, name="ordering")
    OrderingModel.metadata.create_all(context.engine)
    context.subscribe(CreateBuyerOnOrderStarted(context))
    context.subscribe(CountConfirmedOrdersOfBuyer(context))
    return context


def _count(context: BoundedContext, model: type[OrderingModel]) -> int:
    with context.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(model)).scalar_one())


def test_starting_an_order_creates_its_buyer_in_the_same_transaction(
    ordering: BoundedContext,
) -> None:
    welcomes = ordering.subscribe(Welcomes())

    with ordering.transaction():
        StartOrder(ordering).execute("order-1", "user-7")

    with ordering.transaction() as session:
        assert session.get_one(Order, "order-1").status == "started"
        assert session.get_one(Buyer, "user-7").confirmed_orders == 0
    # The Buyer, created by a handler, recorded an event too: dispatched in the same commit.
    assert welcomes.user_ids == ["user-7"]


def test_when_creating_the_buyer_fails_the_order_is_not_started_either(
    ordering: BoundedContext,
) -> None:
    class IdentityIsDown(DomainEventHandler):
        def handle(self, event: OrderStartedDomainEvent) -> None:
            raise ConnectionError("identity service unreachable")

    ordering.subscribe(IdentityIsDown())

    with pytest.raises(ConnectionError), ordering.transaction():
        StartOrder(ordering).execute("order-1", "user-7")

    assert _count(ordering, Order) == 0
    assert _count(ordering, Buyer) == 0


def test_an_aggregate_loaded_from_the_database_records_events_dispatched_at_commit(
    ordering: BoundedContext,
) -> None:
    with ordering.transaction():
        StartOrder(ordering).execute("order-1", "user-7")

    with ordering.transaction() as session:
        # Loaded by the ORM: Order.__init__ did not run for this instance.
        ConfirmOrder(ordering).execute("order-1")
        assert session.get_one(Order, "order-1").has_pending_events()

    with ordering.transaction() as session:
        assert session.get_one(Order, "order-1").status == "confirmed"
        assert session.get_one(Buyer, "user-7").confirmed_orders == 1


def test_events_are_dispatched_once_even_when_the_aggregate_stays_in_later_transactions(
    ordering: BoundedContext,
) -> None:
    with ordering.transaction():
        StartOrder(ordering).execute("order-1", "user-7")
    with ordering.transaction():
        ConfirmOrder(ordering).execute("order-1")
    with ordering.transaction():
        pass

    with ordering.transaction() as session:
        assert session.get_one(Buyer, "user-7").confirmed_orders == 1


async def test_in_an_async_transaction_the_order_and_its_buyer_commit_together(
    database_url: str, make_async_context: ContextFactory
) -> None:
    context = make_async_context(database_url, name="ordering")
    await context.create_tables_async()
    async with context.async_engine.begin() as connection:
        await connection.run_sync(OrderingModel.metadata.create_all)
    # The same plain handler: from an async transaction it runs through run_sync.
    context.subscribe(CreateBuyerOnOrderStarted(context))

    async with context.transaction() as session:
        session.add(Order.start("order-1", "user-7"))

    async with context.transaction() as session:
        assert (await session.get_one(Order, "order-1")).status == "started"
        assert (await session.get_one(Buyer, "user-7")).confirmed_orders == 0
