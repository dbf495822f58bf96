"""The dead-letter store: messages a consumer could not handle, with the reason.

Kept in the consuming context's own database, next to its inbox. Nothing is lost:
the body and headers are stored exactly as received, so ``tidings dlq replay`` hands
the handler what the broker delivered.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from tidings.domain.ids import uuid7
from tidings.persistence.tables import dead_letters

_c = dead_letters.c


class DeadLetterReason(StrEnum):
    """Why a message was dead-lettered."""

    TOO_LARGE = "too_large"
    UNDECODABLE = "undecodable"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_PAYLOAD = "invalid_payload"
    HANDLER_FAILED = "handler_failed"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered message."""

    letter_id: str
    consumer: str
    reason: str
    event_id: str | None
    event_type: str | None
    event_version: int | None
    partition_key: str | None
    body: bytes
    headers: dict[str, str]
    error_type: str | None
    error_message: str | None
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime

    def to_json(self, *, with_body: bool = False) -> dict[str, Any]:
        """A JSON-ready summary (the body as text, when asked for)."""
        summary: dict[str, Any] = {
            "letter_id": self.letter_id,
            "consumer": self.consumer,
            "reason": self.reason,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "event_version": self.event_version,
            "partition_key": self.partition_key,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "attempts": self.attempts,
            "first_failed_at": self.first_failed_at.isoformat(),
            "last_failed_at": self.last_failed_at.isoformat(),
            "size": len(self.body),
        }
        if with_body:
            summary["headers"] = self.headers
            summary["body"] = self.body.decode("utf-8", errors="replace")
        return summary


def _text_headers(headers: Mapping[str, Any]) -> dict[str, str]:
    return {
        str(k): v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
        for k, v in headers.items()
    }


class DeadLetterStore:
    """Asyncio access to the dead letters of one context's database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add(
        self,
        *,
        consumer: str,
        reason: DeadLetterReason,
        body: bytes,
        headers: Mapping[str, Any],
        error: BaseException | None,
        attempts: int,
        event_id: str | None = None,
        event_type: str | None = None,
        event_version: int | None = None,
        partition_key: str | None = None,
        first_failed_at: datetime | None = None,
    ) -> str:
        """Store a dead letter; returns its id."""
        now = datetime.now(UTC)
        letter_id = str(uuid7())
        async with self.engine.begin() as connection:
            await connection.execute(
                dead_letters.insert().values(
                    letter_id=letter_id,
                    consumer=consumer,
                    reason=reason.value,
                    event_id=_clip(event_id, 200),
                    event_type=_clip(event_type, 200),
                    event_version=event_version,
                    partition_key=_clip(partition_key, 200),
                    body=bytes(body),
                    headers=json.dumps(_text_headers(headers)),
                    error_type=None if error is None else type(error).__name__,
                    error_message=None if error is None else _clip(str(error), 8000),
                    attempts=attempts,
                    first_failed_at=first_failed_at or now,
                    last_failed_at=now,
                )
            )
        return letter_id

    async def list(self, consumer: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, oldest first."""
        query = select(dead_letters).order_by(_c.first_failed_at, _c.letter_id).limit(limit)
        if consumer is not None:
            query = query.where(_c.consumer == consumer)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [_letter(row) for row in rows]

    async def get_many(self, consumer: str, letter_ids: Sequence[str]) -> Sequence[DeadLetter]:
        """The named dead letters of ``consumer`` that exist, oldest first."""
        query = (
            select(dead_letters)
            .where(_c.consumer == consumer, _c.letter_id.in_(list(letter_ids)))
            .order_by(_c.first_failed_at, _c.letter_id)
        )
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [_letter(row) for row in rows]

    async def get(self, letter_id: str) -> DeadLetter | None:
        async with self.engine.connect() as connection:
            row = (
                (await connection.execute(select(dead_letters).where(_c.letter_id == letter_id)))
                .mappings()
                .first()
            )
        return None if row is None else _letter(row)

    async def count(self, consumer: str | None = None) -> int:
        query = select(func.count()).select_from(dead_letters)
        if consumer is not None:
            query = query.where(_c.consumer == consumer)
        async with self.engine.connect() as connection:
            return int((await connection.execute(query)).scalar_one())

    async def remove(self, letter_ids: Sequence[str]) -> int:
        """Delete the named dead letters (after a successful replay, or a purge)."""
        if not letter_ids:
            return 0
        async with self.engine.begin() as connection:
            result = await connection.execute(
                delete(dead_letters).where(_c.letter_id.in_(letter_ids))
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def purge(self, consumer: str | None = None) -> int:
        """Delete every dead letter (of ``consumer``)."""
        statement = delete(dead_letters)
        if consumer is not None:
            statement = statement.where(_c.consumer == consumer)
        async with self.engine.begin() as connection:
            result = await connection.execute(statement)
        return int(getattr(result, "rowcount", 0) or 0)

    async def record_failed_replay(self, letter_id: str, error: BaseException) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(
                update(dead_letters)
                .where(_c.letter_id == letter_id)
                .values(
                    attempts=_c.attempts + 1,
                    error_type=type(error).__name__,
                    error_message=_clip(str(error), 8000),
                    last_failed_at=datetime.now(UTC),
                )
            )


def _clip(value: str | None, size: int) -> str | None:
    """At most ``size`` characters, NULs replaced: PostgreSQL text cannot hold them, and
    a hostile message's id or key must not stop its own dead-lettering."""
    return None if value is None else value[:size].replace("\x00", "\ufffd")


def _letter(row: Mapping[str, Any] | RowMapping) -> DeadLetter:
    return DeadLetter(
        letter_id=row["letter_id"],
        consumer=row["consumer"],
        reason=row["reason"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        event_version=row["event_version"],
        partition_key=row["partition_key"],
        body=bytes(row["body"]),
        headers=json.loads(row["headers"]),
        error_type=row["error_type"],
        error_message=row["error_message"],
        attempts=row["attempts"],
        first_failed_at=row["first_failed_at"],
        last_failed_at=row["last_failed_at"],
    )
