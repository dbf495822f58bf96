"""What the relay benchmarks share: the event, a fast backlog fill, timing transports.

The backlog is filled with one ``INSERT ... SELECT generate_series`` per call, so a
million rows take seconds rather than minutes. The rows have the shape tidings writes:
:func:`make_context` publishes one event through tidings and :func:`fill_backlog`
checks that its SQL produces the same payload for the same values.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from typing import Any, ClassVar

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from tidings import BoundedContext, IntegrationEvent
from tidings.contracts.cloudevents import CloudEvent
from tidings.contracts.envelope import partition_slot
from tidings.transports.base import NOTHING_UNROUTABLE, Delivery, Transport, Unroutable

SOURCE = "bench"
KEYS = 1000


class ThingUpdatedIntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = "bench.thing.updated"
    thing_id: str
    seq: int
    name: str

    def partition_key(self) -> str:
        return self.thing_id


def sync_engine(url: str) -> Engine:
    return create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


_PAYLOAD_SQL = (
    '\'{"thing_id":"thing-\' || (i % ' + str(KEYS) + ') || \'","seq":\' || i || '
    '\',"name":"Desk lamp with a long enough name"}\''
)


def _expected_payload(seq: int) -> str:
    return ThingUpdatedIntegrationEvent(
        thing_id=f"thing-{seq % KEYS}", seq=seq, name="Desk lamp with a long enough name"
    ).model_dump_json(exclude={"event_id", "occurred_at"})


def make_context(url: str, broker_url: str = "memory://bench") -> BoundedContext:
    """A context on ``url`` whose outbox exists; checks the fill SQL against tidings."""
    context = BoundedContext(SOURCE, database_url=url, broker_url=broker_url)
    context.create_tables()
    with context.transaction():
        context.integration_events.publish(
            ThingUpdatedIntegrationEvent(
                thing_id="thing-7", seq=7, name="Desk lamp with a long enough name"
            )
        )
    with context.engine.begin() as connection:
        written = connection.execute(
            text("SELECT payload, partition_key, correlation_id FROM tidings_outbox")
        ).one()
        generated = connection.execute(
            text(f"SELECT {_PAYLOAD_SQL} FROM (SELECT 7 AS i) AS s")
        ).scalar_one()
        connection.execute(text("DELETE FROM tidings_outbox"))
    if written.payload != generated or written.payload != _expected_payload(7):
        raise RuntimeError(f"fill SQL drifted from tidings: {written.payload} != {generated}")
    if written.correlation_id is None:
        raise RuntimeError("tidings wrote no correlation id; update the fill SQL")
    return context


# A sampled W3C traceparent of a trace of its own per row, as a create span would leave.
_TRACEPARENT_SQL = "'00-' || md5(random()::text) || '-' || left(md5(random()::text), 16) || '-01'"


def fill_backlog(engine: Engine, count: int, *, start: int = 0, traced: bool = False) -> None:
    """Add ``count`` pending rows shaped like tidings' (one correlation id per event);
    ``traced``: each carries a traceparent, as when the producer's process traces."""
    traceparent = _TRACEPARENT_SQL if traced else "NULL"
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO tidings_outbox (event_id, event_type, event_version, source, "
                "partition_key, partition_slot, payload, occurred_at, created_at, "
                "correlation_id, causation_id, traceparent) "
                "SELECT gen_random_uuid()::text, :type, 1, :source, "
                "'thing-' || (i % CAST(:keys AS bigint)), "
                "(CAST(:slots AS int[]))[(i % CAST(:keys AS bigint)) + 1], "
                f"{_PAYLOAD_SQL}, clock_timestamp(), clock_timestamp(), "
                f"gen_random_uuid()::text, NULL, {traceparent} "
                "FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS i"
            ),
            {
                "type": ThingUpdatedIntegrationEvent.event_type,
                "source": SOURCE,
                "keys": KEYS,
                # PostgreSQL has no crc32: the slots of the keys, as tidings computes them.
                "slots": [partition_slot(f"thing-{key}") for key in range(KEYS)],
                "first": start,
                "last": start + count - 1,
            },
        )


def insert_backlog(engine: Engine, count: int, *, start: int = 0) -> None:
    """:func:`fill_backlog` for any database (SQLite has no ``generate_series``): the
    same rows, built in Python and inserted with one ``executemany``."""
    from datetime import UTC, datetime

    from tidings.domain.ids import uuid7
    from tidings.persistence.tables import outbox

    now = datetime.now(UTC)
    rows = [
        {
            "event_id": str(uuid7()),
            "event_type": ThingUpdatedIntegrationEvent.event_type,
            "event_version": 1,
            "source": SOURCE,
            "partition_key": f"thing-{seq % KEYS}",
            "partition_slot": partition_slot(f"thing-{seq % KEYS}"),
            "payload": _expected_payload(seq),
            "occurred_at": now,
            "created_at": now,
            "correlation_id": str(uuid7()),
        }
        for seq in range(start, start + count)
    ]
    with engine.begin() as connection:
        connection.execute(outbox.insert(), rows)


def clear_outbox(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM tidings_outbox"))
        connection.execute(text("DELETE FROM tidings_relay_members"))
        connection.execute(text("DELETE FROM tidings_relay_partitions"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE tidings_outbox"))


class Timed(Transport):
    """Wraps a transport: records when it connected and when each batch was confirmed.

    ``on_confirmed(events, at)`` runs after each confirmed batch (``time.monotonic()``).
    """

    def __init__(
        self,
        inner: Transport,
        on_confirmed: Callable[[Sequence[CloudEvent], float], None] | None = None,
    ) -> None:
        super().__init__(inner.url)
        self.inner = inner
        self.connected_at: float | None = None
        self.last_confirmed_at = 0.0
        self.confirmed = 0
        self._on_confirmed = on_confirmed

    async def connect(self) -> None:
        await self.inner.connect()
        if self.connected_at is None:
            self.connected_at = time.monotonic()

    async def close(self) -> None:
        await self.inner.close()

    async def publish_batch(self, source: str, events: Sequence[CloudEvent]) -> Unroutable:
        unroutable = await self.inner.publish_batch(source, events)
        self.last_confirmed_at = time.monotonic()
        self.confirmed += len(events)
        if self._on_confirmed is not None:
            self._on_confirmed(events, self.last_confirmed_at)
        return unroutable

    async def declare_subscription(self, group: str, event_types: Collection[str]) -> None:
        await self.inner.declare_subscription(group, event_types)

    async def delete_subscription(self, group: str) -> None:
        await self.inner.delete_subscription(group)

    def subscribe(self, group: str, event_types: Collection[str]) -> Any:
        return self.inner.subscribe(group, event_types)

    async def ack(self, delivery: Delivery) -> None:
        await self.inner.ack(delivery)

    async def nack(self, delivery: Delivery, *, requeue: bool = True) -> None:
        await self.inner.nack(delivery, requeue=requeue)


class NullTransport(Transport):
    """Confirms every batch at once: isolates the relay's own (database and CPU) path."""

    schemes = ("null",)

    async def connect(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def publish_batch(self, source: str, events: Sequence[CloudEvent]) -> Unroutable:
        return NOTHING_UNROUTABLE

    async def declare_subscription(self, group: str, event_types: Collection[str]) -> None:
        pass

    def subscribe(self, group: str, event_types: Collection[str]) -> Any:
        raise NotImplementedError

    async def ack(self, delivery: Delivery) -> None:
        pass

    async def nack(self, delivery: Delivery, *, requeue: bool = True) -> None:
        pass

    async def delete_subscription(self, group: str) -> None:
        pass
