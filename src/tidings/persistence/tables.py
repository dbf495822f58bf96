"""The tables tidings keeps in each context's database, as SQLAlchemy Core metadata.

Include :data:`metadata` in your Alembic ``target_metadata`` (a list is accepted) to
manage them with your own migrations, or create them with ``tidings db init APP``.
"""

from __future__ import annotations

from sqlalchemy import (
    DDL,
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    event,
)

from tidings.persistence.types import LongBinary, LongText, UtcDateTime

metadata = MetaData()

_Position = BigInteger().with_variant(Integer(), "sqlite")

outbox = Table(
    "tidings_outbox",
    metadata,
    # Monotonic: SQLite AUTOINCREMENT never reuses a deleted position.
    Column("position", _Position, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("event_type", String(200), nullable=False),
    Column("event_version", Integer, nullable=False),
    Column("source", String(200), nullable=False),
    Column("partition_key", String(200), nullable=False),
    # crc32(partition_key) % PARTITION_SLOTS, fixed when the row is made; the relay
    # owning partition ``slot % P`` sends it (tidings.outbox.partitions).
    Column("partition_slot", Integer, nullable=False, server_default="0"),
    Column("payload", LongText, nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("correlation_id", String(200)),
    Column("causation_id", String(200)),
    Column("traceparent", String(64)),
    Column("tracestate", String(512)),
    # What the transaction was opened for (the integration event a consumer handled):
    # links what a consumer's handlers publish, even through domain events, to the
    # handling that caused it (tidings trace).
    Column("trigger_id", String(200)),
    # Relay bookkeeping: retries, delayed availability, and archived (published) rows.
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", LongText),
    Column("available_at", UtcDateTime),
    Column("published_at", UtcDateTime),
    sqlite_autoincrement=True,
)
Index(
    "ix_tidings_outbox_pending",
    outbox.c.position,
    postgresql_where=outbox.c.published_at.is_(None),
    sqlite_where=outbox.c.published_at.is_(None),
)
# A partition's oldest pending rows, in position order (status, and relays that own few
# partitions of a large backlog).
Index(
    "ix_tidings_outbox_partition_pending",
    outbox.c.partition_slot,
    outbox.c.position,
    postgresql_where=outbox.c.published_at.is_(None),
    sqlite_where=outbox.c.published_at.is_(None),
)
Index("ix_tidings_outbox_correlation", outbox.c.correlation_id)
# Rows the relay failed to send: few, so the index is tiny and status finds them without
# reading every pending row.
Index(
    "ix_tidings_outbox_stuck",
    outbox.c.position,
    postgresql_where=outbox.c.published_at.is_(None) & (outbox.c.attempts > 0),
    sqlite_where=outbox.c.published_at.is_(None) & (outbox.c.attempts > 0),
)

publication_log = Table(
    "tidings_publication_log",
    metadata,
    Column("entry_id", String(36), primary_key=True),
    Column("handler_id", String(300), nullable=False),
    Column("event_type", String(300), nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("payload", LongText, nullable=False),
    Column("correlation_id", String(200)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", LongText),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("completed_at", UtcDateTime),
)
Index(
    "ix_tidings_publication_log_due",
    publication_log.c.completed_at,
    publication_log.c.next_attempt_at,
)

inbox = Table(
    "tidings_inbox",
    metadata,
    Column("consumer", String(200), nullable=False),
    Column("event_id", String(200), nullable=False),
    Column("processed_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("consumer", "event_id", name="pk_tidings_inbox"),
)
Index("ix_tidings_inbox_processed_at", inbox.c.processed_at)

dead_letters = Table(
    "tidings_dead_letters",
    metadata,
    Column("letter_id", String(36), primary_key=True),
    Column("consumer", String(200), nullable=False),
    Column("reason", String(40), nullable=False),
    Column("event_id", String(200)),
    Column("event_type", String(200)),
    Column("event_version", Integer),
    Column("partition_key", String(200)),
    # The message exactly as received, so a replay sees what the consumer saw.
    Column("body", LongBinary, nullable=False),
    Column("headers", LongText, nullable=False),
    Column("error_type", String(200)),
    Column("error_message", LongText),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("first_failed_at", UtcDateTime, nullable=False),
    Column("last_failed_at", UtcDateTime, nullable=False),
)
Index("ix_tidings_dead_letters_consumer", dead_letters.c.consumer, dead_letters.c.first_failed_at)
# The dashboard's event lookup finds a message's dead letter by its event id.
Index("ix_tidings_dead_letters_event", dead_letters.c.event_id)

# Partitioned relays (tidings.outbox.partitions): the relay processes of an outbox, each
# heartbeating its row, and one row per partition saying which relay owns it until when.
relay_members = Table(
    "tidings_relay_members",
    metadata,
    Column("name", String(200), nullable=False),
    Column("owner", String(200), nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("published_total", BigInteger, nullable=False, server_default="0"),
    Column("rate_per_s", Float, nullable=False, server_default="0"),
    Column("updated_at", UtcDateTime),
    PrimaryKeyConstraint("name", "owner", name="pk_tidings_relay_members"),
)

relay_partitions = Table(
    "tidings_relay_partitions",
    metadata,
    Column("name", String(200), nullable=False),
    Column("partition_no", Integer, nullable=False),
    Column("owner", String(200)),
    Column("expires_at", UtcDateTime),
    PrimaryKeyConstraint("name", "partition_no", name="pk_tidings_relay_partitions"),
)

# Sharded consumers (tidings.consumer.shard_leases): the consumer processes of a group,
# each heartbeating its row, and one row per shard of the group's subscription saying
# which process reads it until when. The same shape as the relay tables above.
consumer_members = Table(
    "tidings_consumer_members",
    metadata,
    Column("consumer_group", String(200), nullable=False),
    Column("owner", String(200), nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("handled_total", BigInteger, nullable=False, server_default="0"),
    Column("rate_per_s", Float, nullable=False, server_default="0"),
    Column("updated_at", UtcDateTime),
    PrimaryKeyConstraint("consumer_group", "owner", name="pk_tidings_consumer_members"),
)

consumer_shards = Table(
    "tidings_consumer_shards",
    metadata,
    Column("consumer_group", String(200), nullable=False),
    Column("shard_no", Integer, nullable=False),
    Column("owner", String(200)),
    Column("expires_at", UtcDateTime),
    PrimaryKeyConstraint("consumer_group", "shard_no", name="pk_tidings_consumer_shards"),
)

# Causal records (tidings trace): small rows kept for ``causal_retention`` after the
# payloads are gone. A published record is written by the relay, from the outbox row, in
# the statement that deletes (or archives) it; a handled record in the consumer's
# transaction, or where a message is dead-lettered.
published_records = Table(
    "tidings_published",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("event_type", String(200), nullable=False),
    Column("event_version", Integer, nullable=False),
    Column("source", String(200), nullable=False),
    Column("correlation_id", String(200)),
    Column("causation_id", String(200)),
    Column("trigger_id", String(200)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("published_at", UtcDateTime, nullable=False),
)
Index("ix_tidings_published_correlation", published_records.c.correlation_id)
Index("ix_tidings_published_published_at", published_records.c.published_at)

handled_records = Table(
    "tidings_handled",
    metadata,
    Column("record_id", _Position, primary_key=True, autoincrement=True),
    Column("consumer", String(200), nullable=False),
    Column("event_id", String(200), nullable=False),
    Column("source", String(200)),
    Column("event_type", String(200)),
    Column("correlation_id", String(200)),
    Column("causation_id", String(200)),
    Column("received_at", UtcDateTime, nullable=False),
    Column("handled_at", UtcDateTime, nullable=False),
    # handled, duplicate or dead_lettered; a dead letter's reason and error.
    Column("outcome", String(20), nullable=False),
    Column("reason", String(40)),
    Column("detail", LongText),
)
Index("ix_tidings_handled_correlation", handled_records.c.correlation_id)
Index("ix_tidings_handled_event", handled_records.c.event_id)
Index("ix_tidings_handled_handled_at", handled_records.c.handled_at)

# The version of the tables above in this database (tidings.persistence.migrations).
schema_version = Table(
    "tidings_schema",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", UtcDateTime, nullable=False),
)

# PostgreSQL wakes relays with NOTIFY instead of making them poll. A statement-level
# trigger costs nothing on the publishing connection's round trips, and NOTIFY is
# delivered only when the inserting transaction commits.
OUTBOX_CHANNEL = "tidings_outbox"
event.listen(
    outbox,
    "after_create",
    DDL(  # type: ignore[no-untyped-call]
        "CREATE OR REPLACE FUNCTION tidings_outbox_notify() RETURNS trigger "
        f"LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_notify('{OUTBOX_CHANNEL}', ''); "
        "RETURN NULL; END $$"
    ).execute_if(dialect="postgresql"),
)
event.listen(
    outbox,
    "after_create",
    DDL(  # type: ignore[no-untyped-call]
        "CREATE TRIGGER tidings_outbox_notify AFTER INSERT ON tidings_outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION tidings_outbox_notify()"
    ).execute_if(dialect="postgresql"),
)
