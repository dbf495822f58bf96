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

from tidings.causality.records import insert_handled
from tidings.domain.ids import uuid7
from tidings.persistence.tables import dead_letters
from tidings.redaction import redact

_c = dead_letters.c


class DeadLetterReason(StrEnum):
    """Why a message was dead-lettered (docs/operations.md, "Dead-letter reasons")."""

    TOO_LARGE = "too_large"
    """Larger than the consumer's ``max_message_bytes``."""
    LIMIT_EXCEEDED = "limit_exceeded"
    """Past a limit: too many or too long attributes, a payload nested too deeply."""
    BAD_SIGNATURE = "bad_signature"
    """Signed events required, and the signature is missing, unknown or wrong."""
    UNDECODABLE = "undecodable"
    """Not a CloudEvent: bad JSON, a missing or invalid attribute, an id too long."""
    UNKNOWN_TYPE = "unknown_type"
    """A type the group does not handle delivered by a broker that routes by type
    (a misrouting), or a version of a handled type that no handler reads."""
    ROUTING_MISMATCH = "routing_mismatch"
    """The broker's routing metadata (routing key, subject, type header or column)
    names another type than the CloudEvent in the body."""
    INVALID_PAYLOAD = "invalid_payload"
    """The payload fails the contract's validation, or an upcaster fails on it."""
    HANDLER_FAILED = "handler_failed"
    """A handler kept failing for ``max_attempts`` attempts."""


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


def new_letter(
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
) -> dict[str, Any]:
    """The row of one dead letter, for :meth:`DeadLetterStore.add_many`."""
    now = datetime.now(UTC)
    return {
        "letter_id": str(uuid7()),
        "consumer": consumer,
        "reason": reason.value,
        "event_id": _clip(event_id, 200),
        "event_type": _clip(event_type, 200),
        "event_version": event_version,
        "partition_key": _clip(partition_key, 200),
        "body": bytes(body),
        "headers": json.dumps(_text_headers(headers)),
        "error_type": None if error is None else type(error).__name__,
        "error_message": None if error is None else _clip(redact(str(error)), 8000),
        "attempts": attempts,
        "first_failed_at": first_failed_at or now,
        "last_failed_at": now,
    }


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
        record: Mapping[str, Any] | None = None,
    ) -> str:
        """Store a dead letter; returns its id. ``record``: its causal record, kept with it."""
        letter = new_letter(
            consumer=consumer,
            reason=reason,
            body=body,
            headers=headers,
            error=error,
            attempts=attempts,
            event_id=event_id,
            event_type=event_type,
            event_version=event_version,
            partition_key=partition_key,
            first_failed_at=first_failed_at,
        )
        await self.add_many([letter], [] if record is None else [record])
        return str(letter["letter_id"])

    async def add_many(
        self,
        letters: Sequence[Mapping[str, Any]],
        records: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """Store several dead letters (rows from :func:`new_letter`) and their causal
        records in one transaction: a flood of bad messages costs one commit per batch,
        not one per message."""
        if letters:
            async with self.engine.begin() as connection:
                await connection.execute(dead_letters.insert(), list(letters))
                if records:
                    await connection.execute(insert_handled, [dict(r) for r in records])

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
                    error_message=_clip(redact(str(error)), 8000),
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
