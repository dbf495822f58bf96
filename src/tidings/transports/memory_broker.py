"""The in-process broker behind :class:`~tidings.transports.memory.MemoryTransport`.

A :class:`Broker` holds a :class:`Group` per consuming context. A group keeps its
messages in a :class:`KeyQueue` per partition key, each with the deliveries of that key
not yet settled (:class:`InFlight` tokens) and the consumer holding the key, and rotates
the keys with pending messages so that consumers serve them round-robin. A consumer
takes a key's messages only while no other consumer holds it, up to its prefetch; a
requeued delivery goes back, with the later ones of its key, at the head of the key's
queue. :class:`Signal` wakes the consumers waiting for messages, in whatever event loop
they run. See :mod:`tidings.transports.memory` for the behaviour this gives.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from collections.abc import Collection
from dataclasses import dataclass, field

from tidings.contracts.envelope import partition_slot


@dataclass(slots=True, eq=False)
class Message:
    """One published event as a group keeps it; ``delivered`` once handed out."""

    type: str
    key: str
    body: bytes
    delivered: bool = False


@dataclass(slots=True, eq=False)
class InFlight:
    """The token of one delivery; ``live`` turns False once acked, nacked or requeued."""

    group: Group
    consumer: int
    message: Message
    shard: int
    live: bool = True


@dataclass(slots=True, eq=False)
class KeyQueue:
    """One key's messages in a group: those waiting, those delivered and not settled,
    and the consumer holding the key while any delivery of it is unsettled."""

    shard: int
    pending: deque[Message] = field(default_factory=deque)
    in_flight: list[InFlight] = field(default_factory=list)
    holder: int | None = None


class Signal:
    """Wakes every waiter, whatever event loop (or thread) it waits in.

    ``asyncio.Event`` binds to one loop, but a named broker outlives loops (each
    pytest test runs its own), so each wait gets a fresh future instead.
    """

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    async def wait(self) -> None:
        """Until the next :meth:`notify`."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(future)
        try:
            await future
        finally:
            self._waiters.discard(future)

    def notify(self) -> None:
        """Wake everything waiting now."""
        for future in list(self._waiters):
            loop = future.get_loop()
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Group:
    """One consuming context's subscription: its types and its per-key queues."""

    def __init__(self, name: str, shards: int) -> None:
        self.name = name
        self.shards = shards
        self.types: set[str] = set()
        self.keys: dict[str, KeyQueue] = {}
        # keys with pending messages, rotated so that consumers serve keys round-robin
        self.ready: deque[str] = deque()
        self.signal = Signal()
        self.unacked: Counter[int] = Counter()  # live deliveries per consumer

    def append(self, message: Message) -> None:
        """Queue ``message`` behind the earlier ones of its key."""
        queue = self.keys.get(message.key)
        if queue is None:
            shard = partition_slot(message.key) % self.shards
            queue = self.keys[message.key] = KeyQueue(shard)
        if not queue.pending:
            self.ready.append(message.key)
        queue.pending.append(message)

    def take(
        self,
        consumer: int,
        types: Collection[str],
        prefetch: int,
        shards: frozenset[int] | None = None,
    ) -> InFlight | None:
        """The next message ``consumer`` may receive, or None if none is available now;
        only of keys in ``shards`` unless None."""
        if self.unacked[consumer] >= prefetch:
            return None
        rotations = 0  # keys passed over: another consumer holds them, or not our shard
        while self.ready and rotations < len(self.ready):
            key = self.ready[0]
            queue = self.keys[key]
            held = queue.holder is not None and queue.holder != consumer
            if held or (shards is not None and queue.shard not in shards):
                self.ready.rotate(-1)
                rotations += 1
                continue
            self.ready.popleft()
            message = queue.pending.popleft()
            if queue.pending:
                self.ready.append(key)
            if message.type not in types:
                # the group declared more types than this consumer asked for: the group
                # skips the message, as SqliteTransport does (consumers of a group
                # should subscribe to the same types)
                self._forget_if_idle(key, queue)
                rotations = 0
                continue
            token = InFlight(self, consumer, message, queue.shard)
            self.unacked[consumer] += 1
            queue.in_flight.append(token)
            queue.holder = consumer
            return token
        return None

    def settle(self, token: InFlight, *, requeue: bool) -> None:
        """Acknowledge (``requeue=False``) or requeue ``token`` and the later ones of its key."""
        if not token.live:
            return
        queue = self.keys[token.message.key]
        index = queue.in_flight.index(token)
        if requeue:
            returned = queue.in_flight[index:]
            del queue.in_flight[index:]
            for later in returned:
                later.live = False
                self.unacked[later.consumer] -= 1
            if not queue.pending:
                self.ready.append(token.message.key)
            queue.pending.extendleft(reversed([t.message for t in returned]))
        else:
            token.live = False
            self.unacked[token.consumer] -= 1
            del queue.in_flight[index]
        if not queue.in_flight:
            queue.holder = None
        self._forget_if_idle(token.message.key, queue)
        self.signal.notify()

    def requeue_all(self, consumer: int) -> None:
        """Give back everything ``consumer`` holds, as if it had nacked its oldest deliveries."""
        for queue in list(self.keys.values()):
            if queue.holder == consumer and queue.in_flight:
                self.settle(queue.in_flight[0], requeue=True)

    def _forget_if_idle(self, key: str, queue: KeyQueue) -> None:
        if not queue.pending and not queue.in_flight:
            del self.keys[key]


class Broker:
    """One named broker: its groups, by name."""

    def __init__(self) -> None:
        self.groups: dict[str, Group] = {}

    def group(self, name: str, event_types: Collection[str], shards: int) -> Group:
        """The group ``name`` (created with ``shards`` shards if new), now also keeping
        ``event_types``."""
        group = self.groups.get(name)
        if group is None:
            group = self.groups[name] = Group(name, shards)
        group.types.update(event_types)
        return group
