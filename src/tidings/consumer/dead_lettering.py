"""Sending a consumer's rejected and failed deliveries to the dead letters.

A delivery is acknowledged only once its dead letter (and the causal record of its
event, when it names one) is stored: a database outage is waited out, so a message is
never lost and never a crash; any other failure to store it is a bug, raised.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tidings.causality.records import dead_letter_record
from tidings.consumer.admission import Rejection
from tidings.consumer.database_watch import DatabaseWatch
from tidings.consumer.dead_letters import DeadLetterReason, DeadLetterStore, new_letter
from tidings.consumer.items import Item
from tidings.consumer.stats import ConsumerStats
from tidings.observability.metrics import count
from tidings.redaction import redact
from tidings.transports.base import Delivery, Transport, ack_all

logger = logging.getLogger("tidings.consumer")


@dataclass(frozen=True, slots=True)
class Letter:
    """A delivery on its way to the dead letters: why, and what its attempts were."""

    delivery: Delivery
    why: Rejection
    attempts: int = 1
    first_failed_at: datetime | None = None
    received_at: datetime | None = None


class DeadLettering:
    """The dead-letter side of one consumer group."""

    def __init__(
        self,
        context_name: str,
        group: str,
        store: DeadLetterStore,
        transport: Transport,
        database: DatabaseWatch,
        wait_for_database: Callable[[BaseException], Awaitable[bool]],
        stats: ConsumerStats,
    ) -> None:
        self.context_name = context_name
        self.group = group
        self.store = store
        self.transport = transport
        self._database = database
        self._wait_for_database = wait_for_database
        self.stats = stats

    async def give_up(self, item: Item) -> None:
        """Dead-letter an event whose handlers failed every attempt; then ack it."""
        assert item.last_error is not None
        why = Rejection(DeadLetterReason.HANDLER_FAILED, item.last_error, item.event)
        letter = Letter(item.delivery, why, item.failures, item.first_failed_at, item.received_at)
        if await self.store_letters([letter]):
            await item.delivery.ack()

    async def rejections(self, rejected: Sequence[tuple[Delivery, Rejection]]) -> bool:
        """Dead-letter what admission refused, in one transaction; False if stopped."""
        if not await self.store_letters([Letter(d, r) for d, r in rejected]):
            return False
        await ack_all(self.transport, [delivery for delivery, _ in rejected])
        return True

    async def store_letters(self, letters: Sequence[Letter]) -> bool:
        """Store ``letters`` and their causal records in one transaction, waiting out a
        database outage; False if stopped meanwhile (then nothing is acknowledged)."""
        rows = [self._row(letter) for letter in letters]
        records = [
            dead_letter_record(self.group, why.event, why.reason, why.error, letter.received_at)
            for letter in letters
            if (why := letter.why).event is not None
        ]
        while True:
            try:
                await self.store.add_many(rows, records)
                break
            except Exception as failure:
                # The message must be kept, not lost and not a crash: a database that
                # does not answer is waited for; any other failure is a bug to surface.
                if await self._database.reachable():
                    raise
                if not await self._wait_for_database(failure):
                    return False  # stopped: unacknowledged, so delivered again
        self.stats.dead_lettered += len(letters)
        for letter in letters:
            why = letter.why
            kind = "unknown" if why.event is None else why.event.type
            count("dead_lettered", self.context_name, (kind,), why.reason.value)
            logger.warning(
                "%s: dead-lettered a message (%s): %s",
                self.group,
                why.reason.value,
                redact(str(why.error)),
            )
        return True

    def _row(self, letter: Letter) -> dict[str, Any]:
        event = letter.why.event
        return new_letter(
            consumer=self.group,
            reason=letter.why.reason,
            body=letter.delivery.body,
            headers=letter.delivery.headers,
            error=letter.why.error,
            attempts=letter.attempts,
            event_id=None if event is None else event.id,
            event_type=None if event is None else event.type,
            event_version=None if event is None else event.dataversion,
            partition_key=None if event is None else event.subject,
            first_failed_at=letter.first_failed_at,
        )
