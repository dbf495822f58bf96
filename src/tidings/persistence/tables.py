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
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    event,
)

from tidings.persistence.types import UtcDateTime

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
    Column("payload", Text, nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("correlation_id", String(200)),
    Column("causation_id", String(200)),
    Column("traceparent", String(64)),
    Column("tracestate", String(512)),
    # Relay bookkeeping: retries, delayed availability, and archived (published) rows.
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
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
    Column("payload", Text, nullable=False),
    Column("correlation_id", String(200)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
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
    Column("body", LargeBinary, nullable=False),
    Column("headers", Text, nullable=False),
    Column("error_type", String(200)),
    Column("error_message", Text),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("first_failed_at", UtcDateTime, nullable=False),
    Column("last_failed_at", UtcDateTime, nullable=False),
)
Index("ix_tidings_dead_letters_consumer", dead_letters.c.consumer, dead_letters.c.first_failed_at)
# The dashboard's event lookup finds a message's dead letter by its event id.
Index("ix_tidings_dead_letters_event", dead_letters.c.event_id)

relay_lease = Table(
    "tidings_relay_lease",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("published_total", BigInteger, nullable=False, server_default="0"),
    Column("rate_per_s", Float, nullable=False, server_default="0"),
    Column("updated_at", UtcDateTime),
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
