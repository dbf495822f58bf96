"""A NATS shard fetcher stops even when its task swallowed a cancellation (Python 3.11's
``asyncio.wait_for`` can, inside nats-py's fetch): a revoked shard must always stop."""

from __future__ import annotations

import asyncio

from tidings.transports.nats_shards import _ShardFetcher


async def test_a_fetcher_whose_task_swallowed_a_cancellation_still_stops() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # as wait_for does when its wait completes at that moment

    fetcher = object.__new__(_ShardFetcher)
    fetcher.task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(fetcher.stop(), 5)

    assert loop.time() - started < 2, "stop waited on a task that ignored its cancellation"
    assert swallowed == 1
    assert fetcher.task.cancelled()
