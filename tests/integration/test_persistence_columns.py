"""What every database keeps intact: microsecond timestamps and large messages.

On MariaDB a plain ``DATETIME`` drops microseconds and ``TEXT``/``BLOB`` stop at
64 KiB; tidings' columns are ``DATETIME(6)``, ``LONGTEXT`` and ``LONGBLOB`` there.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from sqlalchemy import insert, select, text

from tests.conftest import ContextFactory
from tests.integration.transports.conformance import collect
from tidings import IntegrationEvent
from tidings.domain.ids import uuid7
from tidings.outbox import Relay
from tidings.persistence.engines import create_asyncio_engine, create_sync_engine
from tidings.persistence.tables import dead_letters, outbox, relay_members
from tidings.transports import open_transport
from tidings.transports.memory import MemoryTransport


class DocumentAttachedIntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = "tests.archive.document-attached"

    document_id: str
    content: str


async def test_a_70_kb_event_goes_through_the_outbox_and_the_relay_intact(
    database_url: str, make_async_context: ContextFactory
) -> None:
    broker = f"memory://columns-{uuid7().hex[-12:]}"
    context = make_async_context(database_url, name="archive", broker_url=broker)
    await context.create_tables_async()
    content = "é" * 35_000 + "x" * 1_000  # 71 KB of UTF-8
    event = DocumentAttachedIntegrationEvent(document_id="d-1", content=content)
    try:
        async with open_transport(broker) as consumer:
            await consumer.declare_subscription("readers", {event.event_type})
            with context.transaction():
                context.integration_events.publish(event)
            with context.engine.connect() as connection:
                stored = connection.execute(select(outbox.c.payload)).scalar_one()
            assert len(stored.encode()) > 70_000

            assert await Relay(context, complete_after_commit=False).drain() == 1
            [received] = await collect(consumer, "readers", {event.event_type}, 1, timeout=10)
    finally:
        MemoryTransport.discard_broker(broker)
    assert json.loads(received.data_json)["content"] == content


def test_timestamps_keep_their_microseconds_and_bodies_their_bytes(
    database_url: str, make_context: ContextFactory
) -> None:
    context = make_context(database_url, name="archive")
    moment = datetime(2026, 1, 2, 12, 0, 0, 123456, tzinfo=UTC)
    body = bytes(range(256)) * 800  # 200 KB, not UTF-8
    with context.engine.begin() as connection:
        connection.execute(
            insert(relay_members).values(name="archive", owner="o", expires_at=moment)
        )
        connection.execute(
            insert(dead_letters).values(
                letter_id=str(uuid7()),
                consumer="readers",
                reason="undecodable",
                body=body,
                headers=json.dumps({"h": "v" * 70_000}),
                error_message="e" * 70_000,
                first_failed_at=moment,
                last_failed_at=moment + timedelta(microseconds=1),
            )
        )
    with context.engine.connect() as connection:
        expires_at = connection.execute(select(relay_members.c.expires_at)).scalar_one()
        letter = connection.execute(select(dead_letters)).one()

    assert expires_at == moment
    assert letter.last_failed_at - letter.first_failed_at == timedelta(microseconds=1)
    assert letter.body == body
    assert len(letter.error_message) == 70_000


async def test_mariadb_engines_read_committed_unless_told_otherwise(mariadb_url: str) -> None:
    # REPEATABLE READ made relays marking interleaved partitions deadlock (docs/operations.md).
    query = text("SELECT @@tx_isolation")
    sync_engine = create_sync_engine(mariadb_url)
    chosen = create_sync_engine(mariadb_url, isolation_level="SERIALIZABLE")
    async_engine = create_asyncio_engine(mariadb_url)
    try:
        with sync_engine.connect() as connection:
            assert connection.execute(query).scalar() == "READ-COMMITTED"
        with chosen.connect() as connection:
            assert connection.execute(query).scalar() == "SERIALIZABLE"
        async with async_engine.connect() as connection:
            assert (await connection.execute(query)).scalar() == "READ-COMMITTED"
    finally:
        sync_engine.dispose()
        chosen.dispose()
        await async_engine.dispose()
