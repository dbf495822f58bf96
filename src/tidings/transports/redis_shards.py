"""Sharded subscriptions on Redis Streams: one consumer process reads the shard
streams its :class:`~tidings.transports.sharding.ShardSet` grants.

With ``?shards=N`` the publisher writes each event to shard stream
``<stream>:<partition_slot(key) % N>``, every group having its consumer group on
every shard stream. A consumer process reads its granted shard streams with one
``XREADGROUP`` (``>``) on a connection of its own, and watches the shard set
meanwhile: when the grants change, ``CLIENT UNBLOCK`` from the shared connection ends
the blocking read at once (as a timeout: what it had read comes back all the same).

Hand-over, per shard
    A newly granted shard is first *taken over*: ``XAUTOCLAIM`` with idle 0, from the
    start of the group's pending entries of that stream, moves to this consumer what
    any consumer name had read and not acknowledged (the previous owner either
    drained the shard, so there is nothing, or died with it), and yields it in id
    order; only then are new entries (``>``) of the shard read. A revoked shard is
    left out of the next read; what the last read returned of it is yielded, and
    then :meth:`ShardSet.stopped` is called: nothing of that shard comes after.

Housekeeping and order
    An unsharded subscription claims entries idle for ``claim_idle_ms`` from any
    consumer of the group, which is its crash recovery. A sharded one must not: the
    owner of another shard may just be slow, and taking its entries would hand one
    key's events to two processes at once, and out of order. Recovery is the
    take-over at grant instead (the lease moves only once its holder drained or is
    dead), so a sharded subscription claims on its granted streams only, and only
    what was explicitly given back (``nack(requeue=True)``: idle set to a year), never
    entries that are merely old. For the same reason, do not run unsharded
    subscriptions (``subscribe``, ``subscribe_batches``) of a group next to its
    sharded ones: their ``claim_idle_ms`` housekeeping would take over a live owner's
    slow entries.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence

from redis.exceptions import RedisError

from tidings.errors import ConfigurationError
from tidings.transports.base import Delivery
from tidings.transports.cancellation import cancel_and_wait, raise_if_cancelled
from tidings.transports.redis import RedisTransport
from tidings.transports.redis_consuming import (
    GIVE_BACK_IDLE_MS,
    Subscription,
    autoclaim,
    claim_abandoned,
    read_new,
)
from tidings.transports.sharding import ShardSet

# What a sharded subscription claims besides its take-overs: only entries given back
# (idle set to GIVE_BACK_IDLE_MS), never those a consumer is just slow with.
_GIVEN_BACK_MS = GIVE_BACK_IDLE_MS // 2


async def read_shards(
    transport: RedisTransport,
    group: str,
    wanted: frozenset[str],
    max_batch: int,
    shards: ShardSet,
) -> AsyncIterator[list[Delivery]]:
    """Batches of the deliveries of the shards ``shards`` grants (see the module docs)."""
    streams = transport.options.streams
    if shards.count != len(streams):
        raise ConfigurationError(
            f"a shard set of {shards.count} shards for a Redis stream of {len(streams)}; "
            "size it with transport.shard_count(group)"
        )
    await transport.declare_subscription(group, wanted)
    # Nothing to claim at start: each shard is taken over when granted.
    state = Subscription(group, transport.consumer_name(), claim_due=False)
    await transport.sweep(group, only="")
    count = max(1, min(transport.options.count, max_batch))
    reading: dict[str, int] = {}  # the streams read now, with their shard
    taking_over: dict[str, str] = {}  # granted streams whose pending entries are next
    reader = transport.open_reader()
    watch = _Watch(transport, shards)
    try:
        watch.reader_id = await transport.call(reader.client_id())
        watch.start()
        while True:
            raise_if_cancelled()  # one the last command swallowed (redis-py can)
            watch.wake.clear()  # what changed until now is taken into account here
            granted = shards.granted
            for stream, shard in list(reading.items()):
                if shard not in granted:
                    # Everything read from it was yielded: it is done with.
                    del reading[stream]
                    taking_over.pop(stream, None)
                    state.claim_scan.pop(stream, None)
                    shards.stopped(shard)
            shards.stop_unread(reading.values())  # revoked before it was ever read
            for shard in sorted(granted):
                if streams[shard] not in reading:
                    reading[streams[shard]] = shard
                    taking_over[streams[shard]] = "0-0"
            if taking_over:
                stream, cursor = next(iter(taking_over.items()))
                cursor, entries = await transport.call(
                    autoclaim(transport.client, stream, state, 0, cursor, count)
                )
                if cursor == "0-0":
                    del taking_over[stream]
                else:
                    taking_over[stream] = cursor
                got = [(stream, entries, True)]
            elif not reading:
                await watch.wake.wait()  # nothing granted: wait for a grant
                continue
            else:
                got = await claim_abandoned(transport, state, list(reading), _GIVEN_BACK_MS)
                if not got:
                    if watch.wake.is_set():
                        continue  # grants changed meanwhile: read what they say now
                    # Read in this task, so that cancelling the subscription cancels the
                    # read itself (redis-py then drops the connection); the watcher
                    # interrupts it when the grants change.
                    watch.reading = True
                    try:
                        got = await read_new(transport, reader, state, list(reading), count)
                    finally:
                        watch.reading = False
            batch: list[Delivery] = []
            for stream, entries, redelivered in got:
                shard = reading[stream]
                for delivery in await transport.deliveries(
                    state, stream, entries, redelivered, wanted
                ):
                    batch.append(shards.track(delivery, shard))
            for chunk in _chunks(batch, max_batch):
                yield chunk
    finally:
        await watch.stop()
        with contextlib.suppress(RedisError, OSError):
            await reader.aclose()
        await transport.give_back_all(state)


class _Watch:
    """Watches a shard set for a subscription: wakes it, and ends its blocking read
    (``CLIENT UNBLOCK``, as a timeout: what was read still comes back) when the grants
    change. Best effort: an unblock that arrives just before the read blocks is lost,
    and the read then ends after ``block_ms``."""

    def __init__(self, transport: RedisTransport, shards: ShardSet) -> None:
        self.transport = transport
        self.shards = shards
        self.wake = asyncio.Event()
        self.reader_id: int | None = None
        self.reading = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            raise_if_cancelled()  # one the last CLIENT UNBLOCK swallowed
            await self.shards.changed()
            self.wake.set()
            if self.reading and self.reader_id is not None:
                with contextlib.suppress(RedisError, OSError):
                    await self.transport.client.client_unblock(self.reader_id)

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)


def _chunks(deliveries: Sequence[Delivery], size: int) -> Iterator[list[Delivery]]:
    for start in range(0, len(deliveries), size):
        yield list(deliveries[start : start + size])
