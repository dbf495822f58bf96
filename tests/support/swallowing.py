"""A client library call that loses its caller's cancellation, for the tests of the loops
that must stop all the same (:mod:`tidings.transports.cancellation`).

Python 3.11's ``asyncio.wait_for`` returns its awaitable's result when the cancellation
of the waiting task lands in the step where that awaitable completes. :class:`SwallowingCall`
stands in for a library call that waits under ``wait_for``;
:meth:`SwallowingCall.stop_as_it_completes` lets it complete and, before the waiting task
resumes, starts the stop under test, whose first act is to cancel that task. On 3.11 the
call then returns and the task runs on, cancelled in name only; 3.12's ``wait_for``
raises instead (nothing to reproduce, the stop must end all the same).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

#: Whether this Python's ``asyncio.wait_for`` can lose a cancellation.
WAIT_FOR_SWALLOWS = sys.version_info < (3, 12)

#: A bound on how long a stop may take in these tests (not a synchronisation).
STOP_BOUND = 10.0


class SwallowingCall:
    """Stands in for a library call: the first call waits under ``asyncio.wait_for`` until
    :meth:`stop_as_it_completes`; later calls return at once (they count in :attr:`calls`).

    ``then_block``: after returning from ``wait_for``, the first call waits again until
    it is cancelled once more, as redis-py reads the reply of a command whose write lost
    the cancellation (a stop must then cancel again, :func:`cancel_and_wait`). Every call
    returns ``result``, or raises ``error`` (a broker that cannot be reached).
    """

    def __init__(
        self, *, then_block: bool = False, result: Any = None, error: Exception | None = None
    ) -> None:
        self.result = result
        self.error = error
        self.calls = 0
        self.swallowed = False
        self.entered = asyncio.Event()
        self._complete = asyncio.Event()
        self._then_block = then_block

    async def __call__(self, *_args: Any, **_kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            await asyncio.wait_for(self._complete.wait(), STOP_BOUND)
            task = asyncio.current_task()
            self.swallowed = task is not None and task.cancelling() > 0
            if self._then_block:
                await asyncio.Event().wait()
        if self.error is not None:
            raise self.error
        return self.result

    async def stop_as_it_completes(self, stop: Coroutine[Any, Any, None]) -> None:
        """Once the first call waits, let it complete and start ``stop`` at once (its
        cancellation lands before the calling task resumes); fails unless ``stop`` ends
        within :data:`STOP_BOUND`. ``stop`` runs in a task of its own, so that a stop
        which swallows the cancellation of whoever waits for it cannot hide a hang."""
        async with asyncio.timeout(STOP_BOUND):
            await self.entered.wait()
        self._complete.set()
        stopping = asyncio.create_task(stop)
        done, _ = await asyncio.wait({stopping}, timeout=STOP_BOUND)
        if not done:
            stopping.cancel()
        assert done, "the stop did not end: the cancelled task ran on"
        await stopping

    def check_reproduced(self) -> None:
        """The call lost the stop's cancellation (where ``wait_for`` can lose one)."""
        if WAIT_FOR_SWALLOWS:
            assert self.swallowed, "the cancellation was not swallowed: nothing reproduced"


async def cancel_once(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` once and wait until it ended, as ``asyncio.gather`` (cancelled) or
    a plain ``task.cancel(); await task`` does: no second cancellation."""
    task.cancel()
    await asyncio.wait({task})
