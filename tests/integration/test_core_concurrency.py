"""Concurrent use cases on PostgreSQL and MariaDB: one outbox row per committed use case,
none otherwise."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

from sqlalchemy import Column, MetaData, String, Table, insert, select
from sqlalchemy.orm import registry

from tests.conftest import ContextFactory
from tidings import BoundedContext, DomainEvent, DomainEventHandler, IntegrationEvent
from tidings.persistence.tables import outbox

THREADS = 8
USE_CASES_PER_THREAD = 12
TASKS = 100

metadata = MetaData()
accounts = Table("concurrency_accounts", metadata, Column("id", String(36), primary_key=True))


class AccountOpened(DomainEvent):
    account_id: str


class AccountOpenedIntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = "tests.concurrency.account-opened"

    account_id: str


class PublishAccountOpened(DomainEventHandler):
    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def handle(self, event: AccountOpened) -> None:
        self._context.integration_events.publish(
            AccountOpenedIntegrationEvent(account_id=event.account_id)
        )


class PublishAccountOpenedAsync(DomainEventHandler):
    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    async def handle(self, event: AccountOpened) -> None:
        await self._context.async_integration_events.publish(
            AccountOpenedIntegrationEvent(account_id=event.account_id)
        )


class Refused(Exception):
    pass


def _must_roll_back(number: int) -> bool:
    return number % 3 == 0


def _outbox_keys(context: BoundedContext) -> list[str]:
    """Partition keys of the outbox rows, after checking no two use cases shared a unit of work."""
    with context.engine.connect() as connection:
        rows = connection.execute(select(outbox.c.partition_key, outbox.c.correlation_id)).all()
    assert len({row.correlation_id for row in rows}) == len(rows)
    return [row.partition_key for row in rows]


def _account_ids(context: BoundedContext) -> set[str]:
    with context.engine.connect() as connection:
        return set(connection.execute(select(accounts.c.id)).scalars())


def test_eight_threads_of_use_cases_leave_exactly_one_outbox_row_per_commit(
    server_database_url: str, make_context: ContextFactory
) -> None:
    context = make_context(server_database_url, name="accounts")
    metadata.create_all(context.engine)
    context.subscribe(PublishAccountOpened(context))

    def open_account(number: int) -> bool:
        account_id = f"account-{number}"
        try:
            with context.transaction() as session:
                session.execute(insert(accounts).values(id=account_id))
                context.domain_events.publish(AccountOpened(account_id=account_id))
                if _must_roll_back(number):
                    raise Refused(account_id)
        except Refused:
            return False
        return True

    def worker(thread: int) -> list[bool]:
        first = thread * USE_CASES_PER_THREAD
        return [open_account(n) for n in range(first, first + USE_CASES_PER_THREAD)]

    with ThreadPoolExecutor(THREADS) as pool:
        outcomes = [ok for results in pool.map(worker, range(THREADS)) for ok in results]

    committed = {f"account-{n}" for n, ok in enumerate(outcomes) if ok}
    assert len(committed) == sum(not _must_roll_back(n) for n in range(len(outcomes)))
    keys = _outbox_keys(context)
    assert sorted(keys) == sorted(committed)
    assert _account_ids(context) == committed


async def test_a_hundred_asyncio_tasks_leave_exactly_one_outbox_row_per_commit(
    server_database_url: str, make_context: ContextFactory, make_async_context: ContextFactory
) -> None:
    reader = make_context(server_database_url, name="accounts")
    metadata.create_all(reader.engine)
    context = make_async_context(server_database_url, name="accounts")
    context.subscribe(PublishAccountOpenedAsync(context))

    async def open_account(number: int) -> bool:
        account_id = f"account-{number}"
        try:
            async with context.transaction() as session:
                await session.execute(insert(accounts).values(id=account_id))
                # Let other tasks interleave inside open transactions.
                await asyncio.sleep(0)
                await context.async_domain_events.publish(AccountOpened(account_id=account_id))
                if _must_roll_back(number):
                    raise Refused(account_id)
        except Refused:
            return False
        return True

    outcomes = await asyncio.gather(*(open_account(n) for n in range(TASKS)))

    committed = {f"account-{n}" for n, ok in enumerate(outcomes) if ok}
    assert len(committed) == sum(not _must_roll_back(n) for n in range(TASKS))
    assert sorted(_outbox_keys(reader)) == sorted(committed)
    assert _account_ids(reader) == committed


# -- per-aggregate order of outbox positions ---------------------------------------------
prices = Table(
    "concurrency_prices",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("price", String(20), nullable=False),
)


class Price:
    """An aggregate mapped by the ORM: its UPDATE waits in the session until flush."""

    id: str
    price: str


registry().map_imperatively(Price, prices)


class PriceChangedIntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = "tests.concurrency.price-changed"

    product_id: str
    price: str


def test_outbox_positions_of_one_aggregate_follow_commit_order(
    server_database_url: str, make_context: ContextFactory
) -> None:
    context = make_context(server_database_url, name="prices")
    metadata.create_all(context.engine)
    with context.engine.begin() as connection:
        connection.execute(prices.delete())
        connection.execute(insert(prices).values(id="lamp", price="10"))
    first_published, second_flushed = threading.Event(), threading.Event()

    def change_price(price: str, *, first: bool) -> None:
        with context.transaction() as session:
            session.get_one(Price, "lamp").price = price
            context.integration_events.publish(
                PriceChangedIntegrationEvent(product_id="lamp", price=price)
            )
            if first:
                # Published first, but its commit must wait for the other's row lock.
                first_published.set()
                assert second_flushed.wait(10)
            else:
                assert first_published.wait(10)
                session.flush()  # takes the row lock
                second_flushed.set()
                time.sleep(0.5)  # the first transaction reaches its commit meanwhile

    with ThreadPoolExecutor(2) as pool:
        runs = [
            pool.submit(change_price, "11", first=True),
            pool.submit(change_price, "12", first=False),
        ]
        for run in runs:
            run.result(timeout=30)

    with context.engine.connect() as connection:
        final = connection.execute(select(prices.c.price)).scalar_one()
        published = connection.execute(select(outbox.c.payload).order_by(outbox.c.position))
        last_published = json.loads(published.scalars().all()[-1])["price"]
    # The relay sends in position order: the last event must carry the committed price.
    assert final == "11"
    assert last_published == final
