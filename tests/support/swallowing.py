"""A client library call that loses its caller's cancellation, for the tests of the loops
that must stop all the same (:mod:`tidings.transports.cancellation`).

Python 3.11's ``asyncio.wait_for`` returns its awaitable's result when the cancellation
of the waiting task lands in the step where that awaitable completes: redis-py writes
every command under one, nats-py waits for fetched messages under one, aiomysql
connects under one. :class:`SwallowingCall` has that outcome whenever it is cancelled,
whatever the timing: it returns, and its task runs on with the cancellation only
counted (``Task.cancelling()``), as ``tests/unit/test_cancellation.py`` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

#: A bound on how long a stop may take in these tests (not a synchronisation).
STOP_BOUND = 10.0


class SwallowingCall:
    """Stands in for a library call: the first call waits until its task is cancelled,
    and then returns (:attr:`swallowed`); later calls return at once (they count in
    :attr:`calls`). Every call returns ``result``, or raises ``error`` (a broker that
    cannot be reached).

    ``then_block``: after losing the cancellation, the first call waits again until it
    is cancelled once more, as redis-py reads the reply of a command whose write lost
    it (a stop must then cancel again, :func:`cancel_and_wait`).
    """

    def __init__(
        self, *, then_block: bool = False, result: Any = None, error: Exception | None = None
    ) -> None:
        self.result = result
        self.error = error
        self.calls = 0
        self.swallowed = False
        self._entered = asyncio.Event()
        self._then_block = then_block

    async def __call__(self, *_args: Any, **_kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            self._entered.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.swallowed = True  # as wait_for does when its awaitable completes then
            if self._then_block:
                await asyncio.Event().wait()
        if self.error is not None:
            raise self.error
        return self.result

    async def stopped_by(self, stop: Coroutine[Any, Any, None]) -> None:
        """Once the first call waits, run ``stop`` (which cancels the calling task, or has
        it cancelled); fails unless the call lost that cancellation and ``stop`` ended
        within :data:`STOP_BOUND`."""
        async with asyncio.timeout(STOP_BOUND):
            await self._entered.wait()
        await ends_within_bound(stop)
        assert self.swallowed, "the call was never cancelled: nothing reproduced"


async def ends_within_bound(stop: Coroutine[Any, Any, None]) -> None:
    """Run ``stop`` in a task of its own and fail unless it ends within :data:`STOP_BOUND`:
    a stop that swallows the cancellation of whoever waits for it cannot hide a hang."""
    stopping = asyncio.create_task(stop)
    done, _ = await asyncio.wait({stopping}, timeout=STOP_BOUND)
    if not done:
        stopping.cancel()
    assert done, "the stop did not end: the cancelled task ran on"
    await stopping


async def cancel_once(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` once and wait until it ended, as ``asyncio.gather`` (cancelled) or
    a plain ``task.cancel(); await task`` does: no second cancellation."""
    task.cancel()
    await asyncio.wait({task})
