"""The version of tidings' own tables in a database, and the upgrades between versions.

Version 1 is the schema released before versioning (no ``tidings_schema`` table).
``tidings db init`` creates the latest tables and stamps their version; ``tidings db
upgrade`` applies the missing migrations in order, each stamped as it completes, so
running it again does nothing. The relay and the consumer refuse to start on an older
schema (:class:`~tidings.errors.SchemaOutdatedError`), because they write the tables
that later versions add.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, bindparam, func, inspect, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from tidings.contracts.envelope import partition_slot
from tidings.errors import SchemaOutdatedError
from tidings.persistence.tables import (
    consumer_members,
    consumer_shards,
    handled_records,
    metadata,
    outbox,
    published_records,
    relay_members,
    relay_partitions,
    schema_version,
)

logger = logging.getLogger("tidings.schema")


@dataclass(frozen=True, slots=True)
class Migration:
    """One step from ``version - 1`` to ``version``; ``apply`` is safe to run twice."""

    version: int
    description: str
    apply: Callable[[Connection], None]


def _add_causal_records(connection: Connection) -> None:
    outbox_columns = {c["name"] for c in inspect(connection).get_columns("tidings_outbox")}
    if "trigger_id" not in outbox_columns:
        # Portable DDL: a nullable column needs no rewrite of existing rows anywhere.
        connection.execute(text("ALTER TABLE tidings_outbox ADD COLUMN trigger_id VARCHAR(200)"))
    metadata.create_all(connection, tables=[published_records, handled_records, schema_version])


# The MariaDB/MySQL column types the previous release left narrower than tables.py
# declares: DATETIME without fractions drops microseconds, TEXT and BLOB stop at 64 KiB.
_WIDENED = ("DATETIME(6)", "LONGTEXT", "LONGBLOB")


def _widen_mysql_columns(connection: Connection) -> None:
    """On MySQL/MariaDB, bring tidings' columns to DATETIME(6), LONGTEXT and LONGBLOB.

    A no-op on other databases, and for columns that already have their type (so safe
    to run again after an interruption: MariaDB commits each ALTER by itself).
    """
    dialect = connection.dialect
    if dialect.name not in ("mysql", "mariadb"):
        return
    inspector = inspect(connection)
    present = set(inspector.get_table_names())
    for table in metadata.sorted_tables:
        if table.name not in present:
            continue
        existing = {c["name"]: c for c in inspector.get_columns(table.name)}
        changes = []
        for column in table.columns:
            wanted = column.type.compile(dialect=dialect)
            found = existing.get(column.name)
            if wanted not in _WIDENED or found is None:
                continue
            if found["type"].compile(dialect=dialect).split()[0] == wanted:
                continue
            null = "NULL" if column.nullable else "NOT NULL"
            changes.append(f"MODIFY COLUMN `{column.name}` {wanted} {null}")
        if changes:
            # One ALTER per table: MariaDB copies the table once for all its columns.
            connection.execute(text(f"ALTER TABLE `{table.name}` {', '.join(changes)}"))


# Pending rows given their slot per statement batch: bounded memory on a large backlog.
_SLOT_BATCH = 1000


def _partition_relays(connection: Connection) -> None:
    """Partitioned relays: outbox ``partition_slot``, members and partitions, no lease.

    The slot is crc32 of the key, computed here in Python (PostgreSQL has no crc32, and
    the three databases would not agree on one in SQL). Only pending rows need it: the
    archived ones are never read by a relay again (replays send them directly).
    """
    columns = {c["name"] for c in inspect(connection).get_columns("tidings_outbox")}
    if "partition_slot" not in columns:
        connection.execute(
            text("ALTER TABLE tidings_outbox ADD COLUMN partition_slot INTEGER NOT NULL DEFAULT 0")
        )
    pending = outbox.c.published_at.is_(None)
    after = 0
    while True:
        rows = connection.execute(
            select(outbox.c.position, outbox.c.partition_key)
            .where(pending, outbox.c.position > after)
            .order_by(outbox.c.position)
            .limit(_SLOT_BATCH)
        ).all()
        if not rows:
            break
        connection.execute(
            outbox.update()
            .where(outbox.c.position == bindparam("row"))
            .values(partition_slot=bindparam("slot")),
            [{"row": position, "slot": partition_slot(key)} for position, key in rows],
        )
        after = rows[-1][0]
    metadata.create_all(connection, tables=[relay_members, relay_partitions])
    if "tidings_relay_lease" in inspect(connection).get_table_names():
        connection.execute(text("DROP TABLE tidings_relay_lease"))


def _shard_consumers(connection: Connection) -> None:
    """Sharded consumers: tidings_consumer_members and tidings_consumer_shards, empty
    (a group's shard rows are made by its first consumer)."""
    metadata.create_all(connection, tables=[consumer_members, consumer_shards])


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        2,
        "causal records (tidings_published, tidings_handled), outbox trigger_id",
        _add_causal_records,
    ),
    Migration(
        3,
        "MySQL/MariaDB: DATETIME(6), LONGTEXT and LONGBLOB columns (no-op elsewhere)",
        _widen_mysql_columns,
    ),
    Migration(
        4,
        "partitioned relays: outbox partition_slot (given to pending rows), "
        "tidings_relay_members and tidings_relay_partitions replace tidings_relay_lease",
        _partition_relays,
    ),
    Migration(
        5,
        "sharded consumers: tidings_consumer_members and tidings_consumer_shards",
        _shard_consumers,
    ),
)
LATEST_VERSION = MIGRATIONS[-1].version


def current_version(connection: Connection) -> int:
    """The schema version of the database: 0 when it holds no tidings tables.

    A database without a stamp but with every current table (created from
    ``tidings.metadata`` by Alembic or ``metadata.create_all``) counts as the latest;
    one with the outbox but not the causal tables was made by the release before
    versioning (1).
    """
    tables = set(inspect(connection).get_table_names())
    if schema_version.name in tables:
        stamped = connection.execute(select(func.max(schema_version.c.version))).scalar()
        if stamped is not None:
            return int(stamped)
    if "tidings_outbox" not in tables:
        return 0
    if set(metadata.tables) <= tables:
        columns = {c["name"] for c in inspect(connection).get_columns("tidings_outbox")}
        if "partition_slot" in columns:
            return LATEST_VERSION
        if "trigger_id" in columns:
            return 3
    return 1


def upgrade_connection(connection: Connection) -> tuple[int, int]:
    """Bring the tidings tables to :data:`LATEST_VERSION`; (version before, after)."""
    before = current_version(connection)
    if before == 0:
        metadata.create_all(connection)
        _stamp(connection, LATEST_VERSION)
        return before, LATEST_VERSION
    for migration in MIGRATIONS:
        if migration.version > before:
            logger.info(
                "tidings schema: applying %d (%s)", migration.version, migration.description
            )
            migration.apply(connection)
            _stamp(connection, migration.version)
    metadata.create_all(connection)  # tables added without a migration of their own
    _create_missing_indexes(connection)
    _stamp(connection, max(before, LATEST_VERSION))
    return before, max(before, LATEST_VERSION)


def _create_missing_indexes(connection: Connection) -> None:
    """Indexes added to existing tables (``create_all`` makes indexes only with a new
    table): created when the database lacks them, so an upgrade gets every one."""
    inspector = inspect(connection)
    for table in metadata.sorted_tables:
        present = {index["name"] for index in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in present:
                logger.info("tidings schema: creating index %s", index.name)
                index.create(connection)


def upgrade(engine: Engine) -> tuple[int, int]:
    """:func:`upgrade_connection` in one transaction (where the database has them for DDL)."""
    with engine.begin() as connection:
        return upgrade_connection(connection)


async def upgrade_async(engine: AsyncEngine) -> tuple[int, int]:
    """Asyncio flavour of :func:`upgrade`."""
    async with engine.begin() as connection:
        return await connection.run_sync(upgrade_connection)


async def ensure_current(engine: AsyncEngine, context: str) -> None:
    """Raise :class:`SchemaOutdatedError` if the database's tidings tables are outdated.

    Checked when a relay or consumer starts. A database that does not answer is not
    judged here: the process waits it out as for any outage.
    """
    try:
        async with engine.connect() as connection:
            version = await connection.run_sync(current_version)
    except (DBAPIError, OSError) as error:
        logger.warning("could not check the tidings schema version (%s); going on", error)
        return
    refuse_outdated(version, context, "before starting relays and consumers")


def refuse_outdated(version: int, context: str, before: str) -> None:
    """Raise :class:`SchemaOutdatedError` if ``version`` (of the database of ``context``)
    is older than :data:`LATEST_VERSION`, saying to upgrade it ``before`` what."""
    if version < LATEST_VERSION:
        found = "no tidings tables" if version == 0 else f"tidings schema version {version}"
        raise SchemaOutdatedError(
            f"the database of context {context!r} has {found}; this tidings needs schema "
            f"version {LATEST_VERSION}: run `tidings db upgrade APP` with APP naming that "
            f"context (e.g. myapp.catalog:context) {before}"
        )


def _stamp(connection: Connection, version: int) -> None:
    stamped = connection.execute(
        select(schema_version.c.version).where(schema_version.c.version == version)
    ).first()
    if stamped is None:
        connection.execute(
            schema_version.insert().values(version=version, applied_at=datetime.now(UTC))
        )
