"""Column types that behave the same on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, LargeBinary, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

#: Text without MariaDB's 64 KiB ``TEXT`` limit (``LONGTEXT`` there, 4 GiB), for payloads,
#: headers and error messages: a message is allowed up to the consumer's size limit
#: (1 MiB by default), far beyond ``TEXT``.
LongText = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
#: Bytes without MariaDB's 64 KiB ``BLOB`` limit (``LONGBLOB`` there).
LongBinary = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, whatever the database keeps.

    PostgreSQL stores ``timestamptz``; SQLite and MariaDB have no zone, so values are
    stored as naive UTC and read back as aware UTC. On MariaDB the column is
    ``DATETIME(6)``: a plain ``DATETIME`` would drop the microseconds.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(self.impl_instance)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("tidings stores aware datetimes only; got a naive one")
        value = value.astimezone(UTC)
        if dialect.name == "postgresql":
            return value
        return value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite fallback for rows written by hand
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]
