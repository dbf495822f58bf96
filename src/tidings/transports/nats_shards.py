"""Reading a sharded NATS subscription: a pull consumer per shard, each fetched in a task.

With ``?shards=N`` > 1 a group has a durable pull consumer per shard
(:mod:`~tidings.transports.nats_topology`). :class:`ShardedRead` fetches the consumers
of the shards it may read (those a :class:`~tidings.transports.sharding.ShardSet`
grants, or all of them) in a task each, and hands over in batches what they fetched:

* a newly granted shard's consumer is first restarted from its oldest unacknowledged
  message when it has any (:meth:`Topology.take_shard`), so that what a dead owner
  received but never acknowledged comes before anything newer of that shard;
* a revoked shard's task is cancelled and its subscription removed (the server then
  sends it nothing more), what it had fetched is handed over, and only then is
  :meth:`ShardSet.stopped` called;
* each shard's task fetches again only once its previous batch was handed over, so at
  most ``?prefetch=`` messages per shard wait in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from tidings.transports.base import Delivery, TransportError
from tidings.transports.cancellation import cancel_and_wait, raise_if_cancelled
from tidings.transports.nats_connection import CLOSE_ERRORS, CLOSE_TIMEOUT
from tidings.transports.nats_options import NatsOptions
from tidings.transports.nats_publish import BROKER_ERRORS
from tidings.transports.nats_topology import Subscription, Topology
from tidings.transports.sharding import ShardSet

_START_ERRORS: tuple[type[BaseException], ...] = (TransportError, *BROKER_ERRORS)
# How long one fetch waits on the server for messages before asking again.
FETCH_WAIT = 5.0

#: The delivery of a fetched message of a shard, or None when the transport settled it
#: itself (a type the group does not read, on a consumer that cannot filter by type).
Admit = Callable[[Msg, int], Awaitable[Delivery | None]]


class _ShardFetcher:
    """Fetches one shard's consumer in a task; ``ready`` holds what was fetched."""

    def __init__(
        self,
        shard: int,
        durable: str,
        start: Callable[[], Awaitable[None]] | None,
        read: ShardedRead,
    ) -> None:
        self.shard = shard
        self.ready: list[Msg] = []
        self.error: BaseException | None = None
        self._durable = durable
        self._start = start
        self._read = read
        self._room = asyncio.Event()
        self._room.set()
        self.task = asyncio.create_task(self._run(), name=f"nats-shard-{durable}")

    def take(self, limit: int) -> list[Msg]:
        """Up to ``limit`` fetched messages, oldest first; fetching resumes once all went."""
        taken = self.ready[:limit]
        del self.ready[:limit]
        if not self.ready:
            self._room.set()
        return taken

    async def stop(self) -> None:
        """Stop fetching: cancel the task, which removes the subscription on the server.

        Cancelled again until it ends: nats-py's fetch can swallow a cancellation
        (:mod:`~tidings.transports.cancellation`).
        """
        await cancel_and_wait(self.task)

    async def _run(self) -> None:
        read = self._read
        options = read.options
        try:
            if self._start is not None:
                await self._start()
            async with asyncio.timeout(options.connect_timeout):
                subscription = await read.js.pull_subscribe_bind(
                    durable=self._durable, stream=options.stream
                )
        except _START_ERRORS as exc:
            self._fail(exc)
            return
        try:
            while True:
                raise_if_cancelled()  # one the last fetch swallowed
                await self._room.wait()
                try:
                    batch = await subscription.fetch(options.prefetch, timeout=FETCH_WAIT)
                except TimeoutError:
                    continue  # nothing new: ask again
                except BROKER_ERRORS as exc:
                    self._fail(exc)
                    return
                self.ready.extend(batch)
                self._room.clear()
                read.wake.set()
        finally:
            # Removed (and flushed) before the shard counts as stopped: a pull request
            # still waiting on the server would otherwise take messages meant for the
            # shard's next owner, who would then get them only after ack_wait.
            with contextlib.suppress(*CLOSE_ERRORS):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await subscription.unsubscribe()
                    await read.client.flush()

    def _fail(self, exc: BaseException) -> None:
        if isinstance(exc, TransportError):
            self.error = exc
        else:
            self.error = TransportError(
                f"reading consumer {self._durable!r} on NATS at {self._read.where} failed: "
                f"{exc!r}; subscribe again (unacknowledged messages come first again)"
            )
        self._read.wake.set()


class ShardedRead:
    """One sharded subscription of a group: the shards ``shards`` grants, or all."""

    def __init__(
        self,
        *,
        js: JetStreamContext,
        client: NatsClient,
        topology: Topology,
        options: NatsOptions,
        where: str,
        subscription: Subscription,
        admit: Admit,
        give_back: Callable[[list[Msg]], Awaitable[None]],
        shards: ShardSet | None,
    ) -> None:
        self.js = js
        self.client = client
        self.options = options
        self.where = where
        self.wake = asyncio.Event()
        self._topology = topology
        self._subscription = subscription
        self._admit = admit
        self._give_back = give_back
        self._shards = shards
        self._fetchers: dict[int, _ShardFetcher] = {}
        self._turn = 0  # the shard read first next time, so that none starves the others

    async def batches(self, max_batch: int) -> AsyncGenerator[list[Delivery], None]:
        """Batches of deliveries (at least one, at most ``max_batch``), until closed."""
        changed: asyncio.Task[None] | None = None
        try:
            while True:
                for shard, batches in await self._follow_grants(max_batch):
                    for batch in batches:
                        yield batch
                    if self._shards is not None:
                        self._shards.stopped(shard)  # after its last delivery went
                self.wake.clear()  # before looking: a fetch landing after it wakes us
                self._raise_failure()
                batch = await self._collect(max_batch)
                if batch:
                    yield batch
                    continue
                waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(self.wake.wait())}
                if self._shards is not None:
                    if changed is None:
                        changed = asyncio.ensure_future(self._shards.changed())
                    waits.add(changed)
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for wait in waits - {changed}:
                        wait.cancel()
                if changed is not None and changed.done():
                    changed = None
        finally:
            if changed is not None:
                changed.cancel()
            for fetcher in list(self._fetchers.values()):
                await fetcher.stop()
                await self._give_back(fetcher.take(len(fetcher.ready)))
            self._fetchers.clear()

    async def _follow_grants(self, max_batch: int) -> list[tuple[int, list[list[Delivery]]]]:
        """Start reading newly granted shards, stop revoked ones; each revoked shard with
        what it had fetched, in batches (to hand over before the shard counts as
        stopped)."""
        wanted: Collection[int] = (
            self._shards.granted
            if self._shards is not None
            else range(len(self._subscription.consumers))
        )
        for shard in sorted(set(wanted) - self._fetchers.keys()):
            config = self._subscription.consumers[shard]
            durable = config.durable_name
            assert durable is not None
            start: Callable[[], Awaitable[None]] | None = None
            if self._shards is not None:
                # Its one owner now (leases): it may restart the consumer. A group read
                # without a ShardSet may have competing readers, and keeps it as it is.
                start = functools.partial(self._topology.take_shard, self.js, config)
            self._fetchers[shard] = _ShardFetcher(shard, durable, start, self)
        revoked: list[tuple[int, list[list[Delivery]]]] = []
        for shard in sorted(self._fetchers.keys() - set(wanted)):
            fetcher = self._fetchers.pop(shard)
            await fetcher.stop()
            rest = fetcher.take(len(fetcher.ready))
            batches: list[list[Delivery]] = []
            while rest:
                batch = await self._deliveries(shard, rest[:max_batch])
                rest = rest[max_batch:]
                if batch:
                    batches.append(batch)
            revoked.append((shard, batches))
        if self._shards is not None:  # revoked before it was ever read: nothing to hand over
            self._shards.stop_unread(self._fetchers.keys() | {shard for shard, _ in revoked})
        return revoked

    async def _collect(self, max_batch: int) -> list[Delivery]:
        batch: list[Delivery] = []
        shards = sorted(self._fetchers)
        if not shards:
            return batch
        self._turn = (self._turn + 1) % len(shards)
        for shard in shards[self._turn :] + shards[: self._turn]:
            fetcher = self._fetchers[shard]
            if fetcher.ready and len(batch) < max_batch:
                batch += await self._deliveries(shard, fetcher.take(max_batch - len(batch)))
        return batch

    async def _deliveries(self, shard: int, messages: list[Msg]) -> list[Delivery]:
        batch: list[Delivery] = []
        for msg in messages:
            delivery = await self._admit(msg, shard)
            if delivery is None:
                continue
            if self._shards is not None:
                self._shards.track(delivery, shard)
            batch.append(delivery)
        return batch

    def _raise_failure(self) -> None:
        for fetcher in self._fetchers.values():
            if fetcher.error is not None:
                raise fetcher.error


async def one_by_one(
    batches: AsyncGenerator[list[Delivery], None],
    give_back: Callable[[list[Any]], Awaitable[None]],
) -> AsyncGenerator[Delivery, None]:
    """The deliveries of ``batches`` one at a time (``Transport.subscribe``); those not
    handed out when the caller stops, and one it left unsettled, go to ``give_back``
    (as transport tokens)."""
    batch: list[Delivery] = []
    try:
        async with contextlib.aclosing(batches):
            async for batch in batches:
                while batch:
                    yield batch[0]
                    batch.pop(0)  # only now: one left unsettled is given back below
    finally:
        await give_back([delivery._transport_token for delivery in batch])
