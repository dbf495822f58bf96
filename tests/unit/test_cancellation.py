"""Cancelling a task that swallowed its cancellation (Python 3.11's ``asyncio.wait_for``
does, inside redis-py and nats-py): the loop guard honours it, and a task cancelled with
``cancel_and_wait`` ends all the same."""

from __future__ import annotations

import asyncio

import pytest

from tidings.transports.cancellation import cancel_and_wait, raise_if_cancelled


async def test_a_loop_guard_raises_a_cancellation_that_was_swallowed() -> None:
    waiting = asyncio.Event()
    guarded = 0

    async def loop() -> None:
        nonlocal guarded
        try:
            waiting.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass  # as wait_for does when its wait completes at that moment
        raise_if_cancelled()  # still counted by the task: raised here
        guarded += 1

    task = asyncio.create_task(loop())
    await waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert guarded == 0


async def test_a_loop_guard_lets_a_task_that_was_not_cancelled_go_on() -> None:
    raise_if_cancelled()


async def test_a_task_that_swallowed_a_cancellation_still_ends() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # and no loop guard

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(cancel_and_wait(task, again_after=0.05), 5)

    assert loop.time() - started < 2, "it waited on a task that ignored its cancellation"
    assert swallowed == 1
    assert task.cancelled()
