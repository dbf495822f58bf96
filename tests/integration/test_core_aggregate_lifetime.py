"""Events recorded on an aggregate survive until commit, whatever the ORM forgets."""

from __future__ import annotations

import gc

from sqlalchemy import Column, Integer, MetaData, String, Table, select
from sqlalchemy.orm import registry

from tests.conftest import ContextFactory
from tidings import AggregateRoot, DomainEvent, DomainEventHandler

metadata = MetaData()
accounts = Table(
    "lifetime_accounts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("balance", Integer, nullable=False),
)


class AccountCredited(DomainEvent):
    account_id: str


class Account(AggregateRoot):
    def __init__(self, id: str, balance: int = 0) -> None:
        self.id = id
        self.balance = balance

    def credit(self, amount: int) -> None:
        self.balance += amount
        self.record(AccountCredited(account_id=self.id))


registry().map_imperatively(Account, accounts)


class RememberCredits(DomainEventHandler):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def handle(self, event: AccountCredited) -> None:
        self.seen.append(event.account_id)


def test_a_flushed_aggregate_nobody_references_still_has_its_events_dispatched(
    database_url: str, make_context: ContextFactory
) -> None:
    """SQLAlchemy's identity map holds clean, flushed objects weakly: without the unit
    of work keeping the aggregate alive, garbage collection would lose its events."""
    context = make_context(database_url, "lifetime")
    context.create_tables()
    metadata.create_all(context.engine)
    handler = context.subscribe(RememberCredits())

    with context.transaction() as session:
        for number in range(20):
            account = Account(f"a-{number}")
            session.add(account)
            account.credit(10)
            session.flush()  # now clean and only weakly held by the session
        del account
        gc.collect()

    assert sorted(handler.seen) == sorted(f"a-{n}" for n in range(20))
    with context.engine.connect() as connection:
        assert connection.execute(select(accounts.c.balance)).scalars().all() == [10] * 20


def test_an_aggregate_outside_the_session_and_untracked_is_not_dispatched(
    database_url: str, make_context: ContextFactory
) -> None:
    context = make_context(database_url, "lifetime")
    context.create_tables()
    handler = context.subscribe(RememberCredits())

    with context.transaction():
        Account("never-saved").credit(5)

    assert handler.seen == []
