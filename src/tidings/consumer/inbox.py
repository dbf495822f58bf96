"""The inbox: which events a consuming context has already handled.

The row is inserted in the same transaction as the handlers' own writes, with an
"insert unless present" statement: a duplicate delivery finds the row (or, while the
first delivery's transaction is still open, waits on its unique key) and is
acknowledged without running the handlers again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect

from tidings.persistence.tables import inbox

_statements: dict[str, Any] = {}


def insert_unless_present(dialect: Dialect) -> Any:
    """The dialect's "insert, or do nothing if the key exists" statement for the inbox."""
    statement = _statements.get(dialect.name)
    if statement is None:
        if dialect.name == "postgresql":
            statement = postgres_insert(inbox).on_conflict_do_nothing()
        elif dialect.name == "sqlite":
            statement = sqlite_insert(inbox).on_conflict_do_nothing()
        else:  # MySQL / MariaDB
            statement = insert(inbox).prefix_with("IGNORE")
        _statements[dialect.name] = statement
    return statement


def inbox_row(consumer: str, event_id: str) -> dict[str, Any]:
    return {"consumer": consumer, "event_id": event_id, "processed_at": datetime.now(UTC)}


def purge_statement(older_than: timedelta) -> Any:
    """Delete inbox entries older than ``older_than``.

    Keep them longer than any redelivery can take (broker retention, relay replays):
    a duplicate arriving after its entry was purged would run the handlers again.
    """
    return delete(inbox).where(inbox.c.processed_at < datetime.now(UTC) - older_than)
