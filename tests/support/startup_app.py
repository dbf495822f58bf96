"""A consuming context for the start-up race tests, shared with ``tidings consume``.

It consumes the ticks of :mod:`tests.support.relay_app` (whose context the relay
forwards) and writes one effect row per handled tick, in the consumer's transaction:
the tests count them. The URLs travel in the environment variables below.
"""

from __future__ import annotations

import os

from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.engine import Engine

from tests.support.relay_app import MeterTickedIntegrationEvent
from tidings import BoundedContext, IntegrationEventHandler

DATABASE_ENV = "TIDINGS_STARTUP_TEST_DATABASE_URL"
BROKER_ENV = "TIDINGS_STARTUP_TEST_BROKER_URL"
NAME = "startuptest"

metadata = MetaData()
ticks = Table(
    "startuptest_ticks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
)


class RecordTick(IntegrationEventHandler):
    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def handle(self, event: MeterTickedIntegrationEvent) -> None:
        self._context.session.execute(
            insert(ticks).values(event_id=str(event.event_id), seq=event.seq)
        )


def build(database_url: str, broker_url: str, *, create: bool = True) -> BoundedContext:
    context = BoundedContext(NAME, database_url=database_url, broker_url=broker_url)
    if create:
        context.create_tables()
        metadata.create_all(context.engine)
    context.subscribe(RecordTick(context))
    return context


def context() -> BoundedContext:
    """What ``tidings consume tests.support.startup_app:context`` loads (URLs from env)."""
    return build(os.environ[DATABASE_ENV], os.environ[BROKER_ENV], create=False)


def handled(engine: Engine) -> tuple[int, int]:
    """(effect rows, distinct events): equal when no event was handled twice."""
    with engine.connect() as connection:
        rows, distinct = connection.execute(
            select(func.count(), func.count(ticks.c.event_id.distinct()))
        ).one()
    return int(rows), int(distinct)


def seqs_in_handling_order(engine: Engine) -> list[int]:
    with engine.connect() as connection:
        return list(connection.execute(select(ticks.c.seq).order_by(ticks.c.id)).scalars())
