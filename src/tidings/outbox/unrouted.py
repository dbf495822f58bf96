"""Events no subscription took: held for a grace period, then archived as unrouted.

A broker that routes by type (RabbitMQ, NATS, memory) may confirm an event that no
subscription takes, and drop it; the transport reports such events
(:meth:`~tidings.transports.base.Transport.publish_batch`) and the relay never counts
them as delivered. While an event's type has been unroutable for less than the grace
(a consumer starting at the same moment has not declared its subscription yet), the
relay holds the outbox at the first such event, so nothing is lost and per-key order
is kept. Past the grace the type is taken as having no subscriber yet: its events are
archived as *unrouted* (even with retention ``delete``) with a warning, and the relay
goes on; ``tidings outbox replay --unrouted`` sends them again once a subscriber exists.
A shared log (SQLite file, Redis, Kafka) keeps every event for groups declared later:
nothing is unroutable there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from tidings.contracts.envelope import OutboxRow
from tidings.outbox.store import OutboxStore, Retention

logger = logging.getLogger("tidings.relay")


@dataclass(frozen=True, slots=True)
class Settled:
    """What became of a batch with unroutable events, once its rows were marked."""

    sent: int  # rows before the held one (or all): published or archived as unrouted
    unrouted: int  # of those, archived as unrouted
    held_type: str | None  # the type the outbox is held at, if any
    held_position: int | None


class UnroutedTypes:
    """Since when each event type has been routed nowhere, and what that means."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self._since: dict[str, float] = {}

    def __bool__(self) -> bool:
        return bool(self._since)

    async def settle(
        self,
        name: str,
        store: OutboxStore,
        retention: Retention,
        rows: Sequence[OutboxRow],
        unroutable: Sequence[int],
    ) -> Settled | None:
        """Mark a published batch given the (sorted) positions in it no subscription
        took; None when nothing of it needs to differ from an ordinary batch."""
        now = time.monotonic()
        held_at: int | None = None
        unrouted: list[int] = []
        for index in unroutable:
            since = self._since.setdefault(rows[index]["event_type"], now)
            if now - since < self.grace:
                held_at = index
                break
            unrouted.append(index)
        sent = rows if held_at is None else rows[:held_at]
        nowhere = {rows[index]["event_type"] for index in unroutable}
        for row in sent:
            if row["event_type"] not in nowhere:
                self._since.pop(row["event_type"], None)  # taken again
        if held_at is None and not unrouted:
            return None
        lost = {rows[index]["position"] for index in unrouted}
        routed = [row["position"] for row in sent if row["position"] not in lost]
        if routed:
            await store.mark_published(routed, retention)
        if lost:
            await store.mark_unrouted(
                sorted(lost), f"no subscription took it within {self.grace:g} s"
            )
            logger.warning(
                "%s: no subscription took %d event(s) of type(s) %s for %g s: archived "
                "as unrouted; 'tidings outbox replay --unrouted' sends them again",
                name,
                len(lost),
                ", ".join(sorted({rows[index]["event_type"] for index in unrouted})),
                self.grace,
            )
        if held_at is None:
            return Settled(len(sent), len(lost), None, None)
        held = rows[held_at]
        return Settled(len(sent), len(lost), held["event_type"], held["position"])
