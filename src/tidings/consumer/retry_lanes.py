"""Retrying a failed event without giving up per-key order.

An event whose handlers failed is retried at once a few times; then its partition key
is blocked: later events of that key queue behind it (other keys go on), and a task of
its own (a lane) retries it with backoff until it succeeds or is dead-lettered, then
works through the queue in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from tidings.application.retry import RetryPolicy
from tidings.consumer.database_watch import DatabaseWatch
from tidings.consumer.items import Item
from tidings.consumer.stats import ConsumerStats
from tidings.observability.metrics import count
from tidings.redaction import redact
from tidings.transports.base import TransportError

logger = logging.getLogger("tidings.consumer")


class RetryLanes:
    """The blocked keys of one consumer group and the tasks retrying them."""

    def __init__(
        self,
        *,
        context_name: str,
        group: str,
        retry: RetryPolicy,
        immediate_retries: int,
        max_attempts: int,
        handle_once: Callable[[Item], Awaitable[None]],
        give_up: Callable[[Item], Awaitable[None]],
        database: DatabaseWatch,
        wait_for_database: Callable[[BaseException], Awaitable[bool]],
        stats: ConsumerStats,
        stopping: asyncio.Event,
    ) -> None:
        self.context_name = context_name
        self.group = group
        self.retry = retry
        self.immediate_retries = immediate_retries
        self.max_attempts = max_attempts
        self._handle_once = handle_once
        self._give_up = give_up
        self._database = database
        self._wait_for_database = wait_for_database
        self.stats = stats
        self._stopping = stopping
        # Keys whose head event is waiting for a delayed retry, with the events queued
        # behind it; a task per blocked key works through its queue.
        self._blocked: dict[str, deque[Item]] = {}
        self._lanes: set[asyncio.Task[None]] = set()
        self.fatal: Exception | None = None  # a lane's unexpected failure

    def __len__(self) -> int:
        """Keys blocked right now."""
        return len(self._blocked)

    def queue_behind(self, item: Item) -> bool:
        """Queue ``item`` behind its key's failing event, if the key is blocked."""
        blocked = self._blocked.get(item.key)
        if blocked is None:
            return False
        blocked.append(item)
        return True

    async def abandon(self) -> None:
        """Stop every lane; their deliveries belong to a connection that is going."""
        lanes = list(self._lanes)
        for lane in lanes:
            lane.cancel()
        await asyncio.gather(*lanes, return_exceptions=True)
        self._blocked.clear()

    async def charge(self, item: Item | None, error: BaseException) -> bool:
        """Count a failed attempt against ``item``, unless the database was unreachable.

        An outage is not the event's fault: then nothing is counted, and the consumer
        waits for the database before it goes on, so that a restart never sends healthy
        events to the dead letters. False if the consumer was stopped meanwhile.
        """
        if await self._database.reachable():
            if item is not None:
                self._note_failure(item, error)
            return True
        return await self._wait_for_database(error)

    async def handle_alone(self, item: Item) -> None:
        """Retry at once a few times; then block the key and retry later with backoff.

        Attempts made in a failed batch count (``item.failures``), so the handler runs
        ``max_attempts`` times in all, ``immediate_retries + 1`` of them right away.
        """
        while item.failures <= self.immediate_retries and item.failures < self.max_attempts:
            try:
                await self._handle_once(item)
            except Exception as error:
                if not await self.charge(item, error):
                    return  # stopped: unacknowledged, so delivered again
                continue
            await item.delivery.ack()
            return
        if item.failures >= self.max_attempts:
            await self._give_up(item)
            return
        queue: deque[Item] = deque([item])
        self._blocked[item.key] = queue
        lane = asyncio.create_task(self._work_blocked_key(item.key, queue))
        self._lanes.add(lane)
        lane.add_done_callback(self._lanes.discard)

    async def _work_blocked_key(self, key: str, queue: deque[Item]) -> None:
        try:
            while queue:
                item = queue[0]
                if item.failures:
                    delay = self.retry.delay(item.failures - self.immediate_retries)
                    self.stats.retries += 1
                    count("retried", self.context_name, (item.event.type,))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), delay)
                    if self._stopping.is_set():
                        return  # unacked: redelivered to the next consumer
                try:
                    await self._handle_once(item)
                except Exception as error:
                    if not await self.charge(item, error):
                        return
                    if item.failures >= self.max_attempts:
                        await self._give_up(item)
                        queue.popleft()
                    continue
                await item.delivery.ack()
                queue.popleft()
        except TransportError:
            # The connection is gone: run() reconnects, and the broker sends this key's
            # unacknowledged events again.
            return
        except Exception as error:
            # Anything else is a bug (a dead letter that cannot be stored with the database
            # up): stop, and let run() raise it rather than stall this key without a word.
            logger.exception("%s: retrying key %r failed; stopping the consumer", self.group, key)
            self.fatal = error
            self._stopping.set()
        finally:
            self._blocked.pop(key, None)

    def _note_failure(self, item: Item, error: BaseException) -> None:
        item.failures += 1
        item.first_failed_at = item.first_failed_at or datetime.now(UTC)
        item.last_error = error
        count("failed", self.context_name, (item.event.type,))
        logger.warning(
            "%s: handling %s %s failed (attempt %d of %d): %s",
            self.group,
            item.event.type,
            item.event.id,
            item.failures,
            self.max_attempts,
            redact(repr(error)),
        )
