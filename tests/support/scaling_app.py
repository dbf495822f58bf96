"""The consuming context of the consumer scaling acceptance test, shared with the
``tidings consume tests.support.scaling_app:context`` processes it starts.

Its handler is written as the tutorial writes one (``ctx.session``, one insert per
event) and records which process handled the event: ``effects`` rows in insertion
order (an identity column) tell, per key, the order the group's processes handled it
in, and their ``pid`` which process did how much. The contract is the consumer tests'
``ProductPriceChangedIntegrationEvent`` (key = product, ``seq`` = per-key order).

The URLs and the context's name (also the consumer group: unique per run, so parallel
runs never share a queue or a group) travel in the environment variables below.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from sqlalchemy import Column, Identity, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.engine import Engine

from tests.services import require
from tests.support import relay_brokers
from tests.support.consumer_app import ProductPriceChangedIntegrationEvent
from tidings import BoundedContext, IntegrationEventHandler

DATABASE_ENV = "TIDINGS_SCALING_TEST_DATABASE_URL"
BROKER_ENV = "TIDINGS_SCALING_TEST_BROKER_URL"
NAME_ENV = "TIDINGS_SCALING_TEST_NAME"
APP = "tests.support.scaling_app:context"

metadata = MetaData()
# No unique constraint on purpose: an event handled twice shows as two rows.
effects = Table(
    "scalingtest_effects",
    metadata,
    Column("id", Integer, Identity(always=True), primary_key=True),
    Column("product_id", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("pid", Integer, nullable=False),
)


class RecordEffectOnProductPriceChanged(IntegrationEventHandler):
    """One effect row per event, in the consumer's transaction, naming this process."""

    def __init__(self, context: BoundedContext) -> None:
        self._context = context
        self._pid = os.getpid()

    def handle(self, event: ProductPriceChangedIntegrationEvent) -> None:
        self._context.session.execute(
            insert(effects).values(
                product_id=event.product_id,
                seq=event.seq,
                event_id=str(event.event_id),
                pid=self._pid,
            )
        )


def build(database_url: str, broker_url: str, name: str, *, create: bool = True) -> BoundedContext:
    """The consuming context ``name`` (tables created unless ``create`` is false)."""
    context = BoundedContext(name, database_url=database_url, broker_url=broker_url)
    if create:
        context.create_tables()
        metadata.create_all(context.engine)
    context.subscribe(RecordEffectOnProductPriceChanged(context))
    return context


def context() -> BoundedContext:
    """What ``tidings consume tests.support.scaling_app:context`` loads (env URLs)."""
    return build(
        os.environ[DATABASE_ENV], os.environ[BROKER_ENV], os.environ[NAME_ENV], create=False
    )


# -- brokers ------------------------------------------------------------------------------
# Options that make a dead consumer's work move within seconds (the defaults wait 10-30 s).
FAST_FAILOVER = {
    "sqlite": "?lease=2",
    "pubsub": "&ack_deadline=10",
    "rabbitmq": "&shards=4",
    "redis": "&shards=4&claim_idle_ms=2000",
    "nats": "&shards=4",
}


def broker_url(kind: str, tag: str, directory: Path) -> str:
    """A URL of transport ``kind`` of this run's own, removed by ``relay_brokers.remove``."""
    if kind == "kafka":
        # Eight partitions (relay_brokers' four would cap a group at four processes).
        return (
            f"{require('kafka')}?topic=relaytest.{tag}&partitions=8"
            "&session_timeout_ms=6000&heartbeat_interval_ms=1000"
        )
    return relay_brokers.broker_url(kind, tag, directory) + FAST_FAILOVER[kind]


# -- what the effects say -----------------------------------------------------------------
def effect_counts(engine: Engine) -> tuple[int, int]:
    """(effect rows, distinct event ids among them)."""
    query = select(func.count(), func.count(effects.c.event_id.distinct()))
    with engine.connect() as connection:
        rows, distinct = connection.execute(query).one()
    return int(rows), int(distinct)


def effect_rows(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(effects)).scalar_one())


def effects_per_process(engine: Engine) -> Counter[int]:
    """Effect rows per process id."""
    query = select(effects.c.pid, func.count()).group_by(effects.c.pid)
    with engine.connect() as connection:
        return Counter({int(pid): int(count) for pid, count in connection.execute(query)})


def order_inversions(engine: Engine) -> list[tuple[str, int, int]]:
    """(key, seq, the seq written before it) wherever a key's effects go backwards, in
    insertion order."""
    query = select(effects.c.product_id, effects.c.seq).order_by(effects.c.id)
    last: dict[str, int] = {}
    inversions: list[tuple[str, int, int]] = []
    with engine.connect() as connection:
        for key, seq in connection.execute(query):
            if key in last and seq <= last[key]:
                inversions.append((key, seq, last[key]))
            last[key] = seq
    return inversions
