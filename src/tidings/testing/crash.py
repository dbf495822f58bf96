"""Crash points: kill a process exactly where a guarantee is at stake.

Each kills the current process with ``SIGKILL`` (no cleanup, no flush: a real crash)
at one point of the pipeline. Run the code under test in a child process, crash it,
start it again, and count what arrived.

- :class:`CrashAfterConfirm` wraps a transport: the broker has confirmed a batch, the
  relay has not yet marked the rows (the relay then sends them again after a restart;
  the inbox absorbs the duplicates).
- :class:`CrashInHandler` wraps an integration event handler: the process dies inside
  the handler's transaction, which therefore never commits.
- After commit, before the relay sends: call :func:`kill_now` right after the
  ``with ctx.transaction():`` block of the use case returns.
"""

from __future__ import annotations

import functools
import inspect
import os
import signal
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from tidings.transports.base import Transport, Unroutable

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tidings.contracts.cloud_event import CloudEvent
    from tidings.transports.base import Delivery


def kill_now() -> None:
    """SIGKILL this process, now."""
    os.kill(os.getpid(), signal.SIGKILL)


class CrashAfterConfirm(Transport):
    """A transport that dies after the broker confirmed batch number ``after_batches``."""

    def __init__(self, inner: Transport, *, after_batches: int = 1) -> None:
        super().__init__(inner.url)
        self.inner = inner
        self.routes_by_type = inner.routes_by_type
        self.after_batches = after_batches
        self.confirmed = 0

    async def connect(self) -> None:
        await self.inner.connect()

    async def close(self) -> None:
        await self.inner.close()

    async def publish_batch(self, source: str, events: Sequence[CloudEvent]) -> Unroutable:
        unroutable = await self.inner.publish_batch(source, events)
        self.confirmed += 1
        if self.confirmed >= self.after_batches:
            kill_now()
        return unroutable

    async def declare_subscription(self, group: str, event_types: Collection[str]) -> None:
        await self.inner.declare_subscription(group, event_types)

    async def delete_subscription(self, group: str) -> None:
        await self.inner.delete_subscription(group)

    def subscribe(self, group: str, event_types: Collection[str]) -> AsyncIterator[Delivery]:
        return self.inner.subscribe(group, event_types)

    async def ack(self, delivery: Delivery) -> None:
        await self.inner.ack(delivery)

    async def nack(self, delivery: Delivery, *, requeue: bool = True) -> None:
        await self.inner.nack(delivery, requeue=requeue)


class CrashInHandler:
    """Wraps an integration event handler; dies inside it at event ``on_event`` (1-based)."""

    def __init__(self, handler: Any, *, on_event: int = 1) -> None:
        self.handler = handler
        self.on_event = on_event
        self.seen = 0
        # Subscribed under the wrapped handler's annotation and name.
        self.handle = self._wrap(handler.handle)

    def _wrap(self, handle: Any) -> Any:
        if inspect.iscoroutinefunction(handle):

            @functools.wraps(handle)
            async def run_async(event: Any) -> None:
                await handle(event)
                self._count()

            return run_async

        @functools.wraps(handle)
        def run(event: Any) -> None:
            handle(event)
            self._count()

        return run

    def _count(self) -> None:
        self.seen += 1
        if self.seen >= self.on_event:
            kill_now()  # after the handler's writes, before its transaction commits
