"""A database made by the previous release (no schema version, no causal records) is
upgraded by ``tidings db upgrade`` and keeps working: its pending outbox row is relayed
and recorded, the consumer handles it and records it, its old inbox rows still guard.

The previous release's tables are a frozen copy (tests/support/released_schema_v1.py).
Run on SQLite files and on PostgreSQL databases; on MariaDB, where the previous
release's columns were DATETIME (no fractions), TEXT and BLOB, the upgrade widens them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Connection, create_engine, insert, inspect, select

from tests.support import consumer_app, released_schema_v1
from tests.support.consumer_infra import declare, new_tag, postgres_database, running, wait_until
from tests.support.relay_processes import ROOT, TIDINGS
from tidings import BoundedContext
from tidings.consumer import Consumer
from tidings.contracts.envelope import outbox_row, partition_slot
from tidings.domain.ids import uuid7
from tidings.errors import SchemaOutdatedError
from tidings.outbox import Relay
from tidings.persistence.migrations import LATEST_VERSION, MIGRATIONS, current_version, upgrade
from tidings.persistence.tables import (
    dead_letters,
    handled_records,
    inbox,
    metadata,
    outbox,
    published_records,
    schema_version,
)


@pytest.fixture(params=["sqlite", "postgres"])
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.db'}", f"sqlite:///{tmp_path / 'basket.db'}"
        return
    tag = new_tag()
    with (
        postgres_database(f"{tag}_catalog") as catalog,
        postgres_database(f"{tag}_basket") as basket,
    ):
        yield catalog, basket


def _released(url: str, broker: str, name: str) -> BoundedContext:
    """A context whose database was created by the previous release."""
    context = BoundedContext(name, database_url=url, broker_url=broker)
    released_schema_v1.metadata.create_all(context.engine)
    consumer_app.metadata.create_all(context.engine)
    return context


async def test_a_released_database_upgrades_and_keeps_working(
    databases: tuple[str, str], tmp_path: Path
) -> None:
    broker = f"sqlite:///{tmp_path / 'broker.db'}"
    catalog = _released(databases[0], broker, "catalog")
    basket = _released(databases[1], broker, "basket")
    basket.subscribe(consumer_app.RecordPriceChange(basket))
    event = consumer_app.ProductPriceChangedIntegrationEvent(product_id="p-1", price=Decimal(5))
    row = outbox_row(
        event,
        source="catalog",
        correlation_id="use-case-1",
        causation_id=None,
        created_at=datetime.now(UTC),
    )
    del row["trigger_id"], row["partition_slot"]  # the released outbox has no such columns
    with catalog.engine.begin() as connection:
        connection.execute(insert(released_schema_v1.outbox).values(**row))
    with basket.engine.begin() as connection:
        connection.execute(
            insert(released_schema_v1.inbox).values(
                consumer="basket", event_id="handled-long-ago", processed_at=datetime.now(UTC)
            )
        )
    consumer = Consumer(basket)
    try:
        with catalog.engine.connect() as connection:
            assert current_version(connection) == 1
        with pytest.raises(SchemaOutdatedError, match="tidings db upgrade"):
            await Relay(catalog).drain()
        with pytest.raises(SchemaOutdatedError, match="tidings db upgrade"):
            await consumer.run()

        # The command, as an operator runs it (the basket through the test app's env).
        env = {
            **os.environ,
            consumer_app.DATABASE_ENV: databases[1],
            consumer_app.BROKER_ENV: broker,
        }
        for expected in (f"version 1 → version {LATEST_VERSION}", "up to date"):
            done = subprocess.run(
                [TIDINGS, "db", "upgrade", "tests.support.consumer_app:context"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            assert expected in done.stdout
        catalog.create_tables()  # what `tidings db init` runs: an older schema is upgraded
        assert upgrade(catalog.engine) == (LATEST_VERSION, LATEST_VERSION)
        for context in (catalog, basket):
            with context.engine.connect() as connection:
                assert current_version(connection) == LATEST_VERSION
                columns = {c["name"] for c in inspect(connection).get_columns("tidings_outbox")}
                assert {"trigger_id", "partition_slot"} <= columns
                names = set(inspect(connection).get_table_names())
                assert "tidings_relay_lease" not in names
                assert {"tidings_consumer_members", "tidings_consumer_shards"} <= names
                # Indexes added to existing tables come with the upgrade too.
                indexes = {i["name"] for i in inspect(connection).get_indexes("tidings_outbox")}
                assert {"ix_tidings_outbox_stuck", "ix_tidings_outbox_partition_pending"} <= indexes
        with catalog.engine.connect() as connection:
            slot = connection.execute(select(outbox.c.partition_slot)).scalar_one()
        assert slot == partition_slot("p-1"), "the pending row got its key's slot"

        consumer = Consumer(basket)
        await declare(consumer)
        assert await Relay(catalog).drain() == 1
        async with running(consumer):
            await wait_until(lambda: consumer.stats.handled == 1, what="the old row's event")
        with catalog.engine.connect() as connection:
            recorded = connection.execute(select(published_records)).mappings().one()
        assert (recorded["event_id"], recorded["correlation_id"]) == (
            str(event.event_id),
            "use-case-1",
        )
        with basket.engine.connect() as connection:
            assert connection.execute(select(handled_records.c.outcome)).scalars().all() == [
                "handled"
            ]
            assert set(connection.execute(select(inbox.c.event_id)).scalars()) == {
                "handled-long-ago",
                str(event.event_id),
            }
    finally:
        await catalog.adispose()
        await basket.adispose()


async def test_the_upgrading_guide_shows_the_latest_version_and_the_refusal_as_printed(
    tmp_path: Path,
) -> None:
    guide = (ROOT / "docs" / "upgrading.md").read_text()
    versions = [int(v) for v in re.findall(r"^\| (\d+) \|", guide, flags=re.MULTILINE)]
    assert versions == list(range(1, LATEST_VERSION + 1))
    assert f"version 1 → version {LATEST_VERSION}\n" in guide
    assert f"schema version {LATEST_VERSION}, up to date\n" in guide
    shown = re.search(r"```\n(error: the database of context .*?)```", guide, flags=re.DOTALL)
    assert shown is not None
    catalog = _released(f"sqlite:///{tmp_path / 'catalog.db'}", "memory://guide", "catalog")
    try:
        with pytest.raises(SchemaOutdatedError) as refused:
            await Relay(catalog).drain()
    finally:
        await catalog.adispose()
    assert f"error: {refused.value}" == " ".join(shown.group(1).split())


def test_a_version_3_outbox_gets_slots_for_every_pending_row_and_loses_its_lease(
    database_url: str, tmp_path: Path
) -> None:
    """Version 3 (one relay per outbox, a lease): the upgrade to partitioned relays gives
    each pending row its key's slot, in batches (more rows than one batch here), leaves
    published rows alone, and replaces the lease; relays then share the outbox."""
    context = _released(database_url, f"sqlite:///{tmp_path / 'broker.db'}", "catalog")
    now = datetime.now(UTC)
    rows = [
        {
            "event_id": str(uuid7()),
            "event_type": "catalog.thing",
            "event_version": 1,
            "source": "catalog",
            "partition_key": f"thing-{n % 300}",
            "payload": "{}",
            "occurred_at": now,
            "created_at": now,
            "published_at": now if n < 100 else None,
        }
        for n in range(2_500)
    ]
    with context.engine.begin() as connection:
        connection.execute(insert(released_schema_v1.outbox), rows)
        for migration in MIGRATIONS[:2]:  # to version 3, as the previous release left it
            migration.apply(connection)
        connection.execute(
            insert(released_schema_v1.relay_lease).values(
                name="catalog", owner="old:1:relay", expires_at=now
            )
        )
        connection.execute(insert(schema_version).values(version=3, applied_at=now))
    with context.engine.connect() as connection:
        assert current_version(connection) == 3
    try:
        assert upgrade(context.engine) == (3, LATEST_VERSION)
        with context.engine.connect() as connection:
            stored = connection.execute(
                select(outbox.c.partition_key, outbox.c.partition_slot, outbox.c.published_at)
            ).all()
            assert "tidings_relay_lease" not in inspect(connection).get_table_names()
        pending = [(key, slot) for key, slot, published in stored if published is None]
        assert len(pending) == 2_400
        assert all(slot == partition_slot(key) for key, slot in pending)
        assert {slot for key, slot, published in stored if published is not None} == {0}
    finally:
        context.dispose()


def test_db_init_creates_the_latest_schema_stamped(tmp_path: Path) -> None:
    context = BoundedContext("fresh", database_url=f"sqlite:///{tmp_path / 'fresh.db'}")
    context.create_tables()
    with context.engine.connect() as connection:
        assert current_version(connection) == LATEST_VERSION
        assert "tidings_consumer_shards" in inspect(connection).get_table_names()
    assert upgrade(context.engine) == (LATEST_VERSION, LATEST_VERSION)
    context.dispose()


def test_tables_created_from_the_metadata_count_as_the_latest_version(tmp_path: Path) -> None:
    """Alembic (or metadata.create_all) creates every table but stamps no version."""
    engine = create_engine(f"sqlite:///{tmp_path / 'alembic.db'}")
    metadata.create_all(engine)
    with engine.connect() as connection:
        assert current_version(connection) == LATEST_VERSION
    released = create_engine(f"sqlite:///{tmp_path / 'released.db'}")
    released_schema_v1.metadata.create_all(released)
    with released.connect() as connection:
        assert current_version(connection) == 1
    empty = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with empty.connect() as connection:
        assert current_version(connection) == 0
    for each in (engine, released, empty):
        each.dispose()


def test_commands_that_read_the_tables_refuse_a_database_without_them(tmp_path: Path) -> None:
    """The tutorial runs `tidings dlq list` on a context whose database is not initialised
    yet: a "no such table" traceback was all it printed."""
    env = {
        **os.environ,
        consumer_app.DATABASE_ENV: f"sqlite:///{tmp_path / 'basket.db'}",
        consumer_app.BROKER_ENV: f"sqlite:///{tmp_path / 'broker.db'}",
    }
    app = "tests.support.consumer_app:context"
    for command in (
        ["dlq", "list", app],
        ["dlq", "replay", app],
        ["outbox", "status", app],
        ["outbox", "replay", app, "--unrouted"],
        ["outbox", "partitions", app],
        ["db", "purge-records", app],
        ["trace", app, "--last", "1"],
    ):
        done = subprocess.run(
            [TIDINGS, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2, (command, done.stderr)
        assert "has no tidings tables" in done.stderr and "tidings db upgrade" in done.stderr


def test_purge_records_command(tmp_path: Path) -> None:
    env = {
        **os.environ,
        consumer_app.DATABASE_ENV: f"sqlite:///{tmp_path / 'basket.db'}",
        consumer_app.BROKER_ENV: f"sqlite:///{tmp_path / 'broker.db'}",
    }
    app = "tests.support.consumer_app:context"
    for command in (["db", "init", app], ["db", "purge-records", app, "--older-than-days", "0"]):
        done = subprocess.run(
            [TIDINGS, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
    assert "basket: deleted 0 causal records" in done.stdout


def _mariadb_types(connection: Connection) -> dict[str, str]:
    """``table.column`` → the column's type as MariaDB reports it (without collation)."""
    inspector = inspect(connection)
    return {
        f"{table}.{column['name']}": column["type"].compile(dialect=connection.dialect).split()[0]
        for table in inspector.get_table_names()
        for column in inspector.get_columns(table)
    }


@pytest.mark.mariadb
def test_a_released_mariadb_database_is_widened_to_microseconds_and_long_payloads(
    mariadb_url: str,
) -> None:
    context = BoundedContext("archive", database_url=mariadb_url)
    released_schema_v1.metadata.create_all(context.engine)
    old = datetime(2025, 6, 1, 8, 30, 15, tzinfo=UTC)
    with context.engine.begin() as connection:
        connection.execute(
            insert(released_schema_v1.inbox).values(
                consumer="archive", event_id="handled-long-ago", processed_at=old
            )
        )
    try:
        with context.engine.connect() as connection:
            released = _mariadb_types(connection)
        assert released["tidings_outbox.payload"] == "TEXT"
        assert released["tidings_outbox.created_at"] == "DATETIME"
        assert released["tidings_dead_letters.body"] == "BLOB"

        assert upgrade(context.engine) == (1, LATEST_VERSION)
        assert upgrade(context.engine) == (LATEST_VERSION, LATEST_VERSION)

        with context.engine.connect() as connection:
            upgraded = _mariadb_types(connection)
            kept = connection.execute(select(inbox.c.processed_at)).scalar_one()
        assert kept == old
        wide = {"DATETIME(6)", "LONGTEXT", "LONGBLOB"}
        declared = {
            f"{table.name}.{column.name}": wanted
            for table in metadata.sorted_tables
            for column in table.columns
            if (wanted := column.type.compile(dialect=context.engine.dialect)) in wide
        }
        assert len(declared) > 20
        assert {name: upgraded[name] for name in declared} == declared
        assert upgraded["tidings_outbox.payload"] == "LONGTEXT"
        assert upgraded["tidings_inbox.processed_at"] == "DATETIME(6)"
        assert upgraded["tidings_dead_letters.body"] == "LONGBLOB"

        moment = datetime(2026, 1, 2, 12, 0, 0, 123456, tzinfo=UTC)
        content = "é" * 35_000 + "x" * 1_000  # 71 KB of UTF-8
        event = consumer_app.ProductPriceChangedIntegrationEvent(product_id="p", price=Decimal(1))
        row = outbox_row(
            event, source="archive", correlation_id=None, causation_id=None, created_at=moment
        )
        row["payload"] = json.dumps({"content": content}, ensure_ascii=False)
        body = bytes(range(256)) * 300  # 76 KB, not UTF-8
        with context.engine.begin() as connection:
            connection.execute(insert(outbox).values(**row))
            connection.execute(
                insert(dead_letters).values(
                    letter_id=str(uuid7()),
                    consumer="archive",
                    reason="undecodable",
                    body=body,
                    headers="{}",
                    first_failed_at=moment,
                    last_failed_at=moment + timedelta(microseconds=1),
                )
            )
        with context.engine.connect() as connection:
            stored = connection.execute(select(outbox.c.payload, outbox.c.created_at)).one()
            letter = connection.execute(select(dead_letters)).one()
        assert len(stored.payload.encode()) > 70_000
        assert json.loads(stored.payload)["content"] == content
        assert stored.created_at == moment
        assert letter.body == body
        assert letter.last_failed_at - letter.first_failed_at == timedelta(microseconds=1)
    finally:
        context.dispose()
