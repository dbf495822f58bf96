"""Cancelling a broker read loop whose client library can swallow the cancellation.

On Python 3.11 ``asyncio.wait_for`` returns its awaitable's result when a cancellation
lands just as that awaitable completes: the ``CancelledError`` is never raised (3.12's
``wait_for`` no longer does this). redis-py writes every command under one, nats-py
waits for every fetched message under one. A ``task.cancel()`` of a read loop can so
come to nothing: the loop reads on, and whoever waits for the task to end waits for ever.

The request is still counted (:meth:`asyncio.Task.cancelling`): a read loop calls
:func:`raise_if_cancelled` after each read, which raises it; and whoever stops the loop's
task does so with :func:`cancel_and_wait`, which cancels it again while it runs, so that
a read that blocks after a swallowed cancellation ends too, not at its own timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

__all__ = ["CANCEL_AGAIN_AFTER", "cancel_and_wait", "raise_if_cancelled"]

#: How long a cancelled task may run before it is cancelled again: also how long a task
#: that did get its cancellation has for its clean-up (giving back what it read, removing
#: its subscription) before a second one cuts that short. That clean-up is best effort:
#: what it did not give back the broker redelivers later (claim_idle_ms, ack_wait).
CANCEL_AGAIN_AFTER = 1.0


def raise_if_cancelled() -> None:
    """Raise :class:`asyncio.CancelledError` if the current task was asked to cancel
    and is still running: a client library swallowed the cancellation. A read loop
    calls it after each read."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_and_wait(task: asyncio.Task[Any], again_after: float = CANCEL_AGAIN_AFTER) -> None:
    """Cancel ``task`` and wait until it ended, cancelling it again every
    ``again_after`` seconds while it runs. Its ``CancelledError`` is not raised here."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=again_after)
    with contextlib.suppress(asyncio.CancelledError):
        await task
