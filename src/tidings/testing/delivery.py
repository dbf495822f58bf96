"""Delivering integration events between contexts in one process, deterministically.

:func:`deliver` runs what ``tidings run`` runs for each context, until nothing is left
to do: after-commit work completed, every outbox relayed, every consumer's backlog
handled (events its handlers publish are relayed and handled in turn). It returns
when the system is quiet, not after a sleep, so tests do not race the pipeline.

It works on the brokers whose backlog a test can read exactly: the in-process
``memory://`` broker and the embedded SQLite-file broker (``sqlite:///broker.db``).
Failing handlers are retried at once (no backoff) and dead-lettered after
``max_attempts``, so a failure shows in the test instead of a wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tidings.application.retry import RetryPolicy
from tidings.consumer.consumer import Consumer
from tidings.errors import ConfigurationError
from tidings.outbox.relay import Relay
from tidings.transports.base import Transport
from tidings.transports.memory import MemoryTransport
from tidings.transports.registry import open_transport
from tidings.transports.sqlite import SqliteTransport

if TYPE_CHECKING:
    from tidings.context import BoundedContext

_NO_BACKOFF = RetryPolicy(initial_delay=0.0, max_delay=0.0, jitter=0.0)
_POLL = 0.002


@dataclass
class DeliveryReport:
    """What one :func:`deliver` did, per context name."""

    relayed: dict[str, int] = field(default_factory=dict)
    handled: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    dead_lettered: dict[str, int] = field(default_factory=dict)
    after_commit_completed: dict[str, int] = field(default_factory=dict)
    rounds: int = 0

    def _add(self, counter: dict[str, int], name: str, count: int) -> None:
        counter[name] = counter.get(name, 0) + count


async def deliver(
    *contexts: BoundedContext,
    max_attempts: int = 3,
    timeout: float = 30.0,
    max_rounds: int = 100,
    retention: str = "archive",
) -> DeliveryReport:
    """Relay and consume between ``contexts`` until the system is quiet.

    Relayed rows are archived, not deleted (``retention``), so that
    :func:`~tidings.testing.published` still shows everything that was published.

    Raises :class:`TimeoutError` if it is still busy after ``timeout`` seconds (a
    handler cycle, or a consumer that cannot reach its broker).
    """
    report = DeliveryReport()
    consumers = [_consumer(ctx, max_attempts) for ctx in contexts if ctx.integration_handlers]
    for consumer in consumers:
        await consumer.declare()  # before anything is relayed: nothing published into the void
    watches = [await _Backlog.open(consumer) for consumer in consumers]
    tasks = [asyncio.ensure_future(consumer.run()) for consumer in consumers]
    deadline = time.monotonic() + timeout
    try:
        for _ in range(max_rounds):
            report.rounds += 1
            progressed = False
            for context in contexts:
                completed = await context.acomplete_pending_handlers()
                report._add(report.after_commit_completed, context.name, completed)
                relay = Relay(context, open_transport(context.broker_url), retention=retention)
                sent = await relay.drain()
                report._add(report.relayed, context.name, sent)
                progressed = progressed or bool(completed or sent)
            before = [_seen(consumer) for consumer in consumers]
            await _until_quiet(consumers, watches, tasks, deadline)
            progressed = progressed or before != [_seen(c) for c in consumers]
            if not progressed:
                break
    finally:
        for consumer in consumers:
            await consumer.stop()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for watch in watches:
            await watch.close()
    for consumer in consumers:
        name = consumer.context.name
        report._add(report.handled, name, consumer.stats.handled)
        report._add(report.duplicates, name, consumer.stats.duplicates)
        report._add(report.dead_lettered, name, consumer.stats.dead_lettered)
    return report


def _consumer(context: BoundedContext, max_attempts: int) -> Consumer:
    return Consumer(context, immediate_retries=0, retry=_NO_BACKOFF, max_attempts=max_attempts)


def _seen(consumer: Consumer) -> tuple[int, int, int, int]:
    stats = consumer.stats
    return stats.handled, stats.duplicates, stats.dead_lettered, stats.ignored


async def _until_quiet(
    consumers: Sequence[Consumer],
    watches: Sequence[_Backlog],
    tasks: Sequence[asyncio.Future[None]],
    deadline: float,
) -> None:
    while True:
        for task in tasks:
            if task.done():
                task.result()  # a consumer that died says why
        busy = [
            c.context.name
            for c, w in zip(consumers, watches, strict=True)
            if c.keys_waiting_for_retry or await w.count()
        ]
        if not busy:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"still delivering to {', '.join(busy)}; is a handler looping?")
        await asyncio.sleep(_POLL)


class _Backlog:
    """How many messages wait for one consumer's group, read from its broker."""

    def __init__(self, transport: Transport, group: str) -> None:
        self._transport = transport
        self._group = group

    @classmethod
    async def open(cls, consumer: Consumer) -> _Backlog:
        transport = open_transport(consumer.context.broker_url)
        if not isinstance(transport, MemoryTransport | SqliteTransport):
            raise ConfigurationError(
                f"deliver() needs memory:// or sqlite:/// brokers to know when the system is "
                f"quiet; {consumer.context.name} uses {transport.url.split('://')[0]}://. "
                "Point the context at memory://test in tests, or run relay and consumer "
                "and wait for the effect you expect"
            )
        await transport.connect()
        return cls(transport, consumer.group)

    async def count(self) -> int:
        if isinstance(self._transport, MemoryTransport):
            return self._transport.backlog(self._group)
        assert isinstance(self._transport, SqliteTransport)
        return sum(p.lag for p in await self._transport.partition_status(self._group))

    async def close(self) -> None:
        await self._transport.close()
