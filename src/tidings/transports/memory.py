"""An in-process broker for tests and single-process applications (``memory://``).

Brokers are shared by name within the process: every ``MemoryTransport`` opened on
``memory://`` talks to the same default broker, and every one opened on
``memory://orders`` to the broker named ``orders``, so a producer and a consumer
wired separately still meet. Nothing survives the process.

Topology
    A consuming group (one per context) gets its own copy of every matching event
    published after its subscription was declared: fan-out across groups. Within a
    group the messages wait in one queue per partition key (``CloudEvent.subject``,
    or the source for keyless events). It routes by type (``routes_by_type``): an
    event whose type no group subscribed to is not kept, and ``publish_batch``
    reports it unroutable (the relay then keeps it, see docs/operations.md).

Per-key order
    A key is *held* by the consumer that has an unacknowledged delivery of it; no
    other consumer of the group receives that key until every delivery of it is
    acknowledged. The holder itself may take the key's next messages before
    acknowledging (pipelining), always in publish order. So competing consumers
    share the keys freely while each key is processed by one consumer at a time.

Prefetch
    A consumer holds at most ``?prefetch=`` (64) unacknowledged deliveries; it waits for
    acknowledgements before taking more, so competing consumers share the work.

Shards
    ``memory://?shards=N`` (N > 1) splits each group's subscription into N shards,
    ``partition_slot(key) % N``, as the reference of a sharded transport
    (:mod:`tidings.transports.sharding`): :meth:`MemoryTransport.subscribe_shards`
    takes only keys of the shards its :class:`ShardSet` grants. The count is the
    group's, fixed when it is declared; a URL with another count is refused.
    ``subscribe`` and ``subscribe_batches`` still read every shard.

Acknowledgement
    ``ack`` forgets the message. ``nack(requeue=True)`` puts the message, and every
    later delivery of the same key still unacknowledged, back at the head of the
    key's queue, in order, marked ``redelivered``; acks of those later deliveries are
    then ignored because they come again. ``nack(requeue=False)`` drops the message.
    When a consumer stops (its ``subscribe`` iterator is closed or garbage
    collected), its unacknowledged deliveries are requeued the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter, deque
from collections.abc import AsyncIterator, Collection, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from tidings.contracts.cloudevents import STRUCTURED_CONTENT_TYPE, CloudEvent, encode_structured
from tidings.contracts.envelope import partition_slot
from tidings.errors import ConfigurationError
from tidings.transports.base import Delivery, Transport, TransportError, Unroutable
from tidings.transports.sharding import ShardSet

_HEADERS = {"content-type": STRUCTURED_CONTENT_TYPE}
DEFAULT_PREFETCH = 64


@dataclass(slots=True, eq=False)
class _Message:
    type: str
    key: str
    body: bytes
    delivered: bool = False


@dataclass(slots=True, eq=False)
class _InFlight:
    """The token of one delivery; ``live`` turns False once acked, nacked or requeued."""

    group: _Group
    consumer: int
    message: _Message
    shard: int
    live: bool = True


@dataclass(slots=True, eq=False)
class _KeyQueue:
    shard: int
    pending: deque[_Message] = field(default_factory=deque)
    in_flight: list[_InFlight] = field(default_factory=list)
    holder: int | None = None


class _Signal:
    """Wakes every waiter, whatever event loop (or thread) it waits in.

    ``asyncio.Event`` binds to one loop, but a named broker outlives loops (each
    pytest test runs its own), so each wait gets a fresh future instead.
    """

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    async def wait(self) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(future)
        try:
            await future
        finally:
            self._waiters.discard(future)

    def notify(self) -> None:
        for future in list(self._waiters):
            loop = future.get_loop()
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Group:
    """One consuming context's subscription: its types and its per-key queues."""

    def __init__(self, name: str, shards: int) -> None:
        self.name = name
        self.shards = shards
        self.types: set[str] = set()
        self.keys: dict[str, _KeyQueue] = {}
        # keys with pending messages, rotated so that consumers serve keys round-robin
        self.ready: deque[str] = deque()
        self.signal = _Signal()
        self.unacked: Counter[int] = Counter()  # live deliveries per consumer

    def append(self, message: _Message) -> None:
        queue = self.keys.get(message.key)
        if queue is None:
            shard = partition_slot(message.key) % self.shards
            queue = self.keys[message.key] = _KeyQueue(shard)
        if not queue.pending:
            self.ready.append(message.key)
        queue.pending.append(message)

    def take(
        self,
        consumer: int,
        types: Collection[str],
        prefetch: int,
        shards: frozenset[int] | None = None,
    ) -> _InFlight | None:
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
            token = _InFlight(self, consumer, message, queue.shard)
            self.unacked[consumer] += 1
            queue.in_flight.append(token)
            queue.holder = consumer
            return token
        return None

    def settle(self, token: _InFlight, *, requeue: bool) -> None:
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

    def _forget_if_idle(self, key: str, queue: _KeyQueue) -> None:
        if not queue.pending and not queue.in_flight:
            del self.keys[key]


class _Broker:
    def __init__(self) -> None:
        self.groups: dict[str, _Group] = {}

    def group(self, name: str, event_types: Collection[str], shards: int) -> _Group:
        group = self.groups.get(name)
        if group is None:
            group = self.groups[name] = _Group(name, shards)
        group.types.update(event_types)
        return group


class MemoryTransport(Transport):
    """The in-process broker named by the URL (``memory://`` or ``memory://name``)."""

    schemes = ("memory",)

    _brokers: ClassVar[dict[str, _Broker]] = {}
    _consumer_ids: ClassVar[itertools.count[int]] = itertools.count(1)

    def __init__(self, url: str) -> None:
        super().__init__(url)
        parts = urlsplit(url)
        self.broker_name = (parts.netloc + parts.path).strip("/")
        self.prefetch = _positive(parts.query, url, "prefetch", DEFAULT_PREFETCH)
        self.shards = _positive(parts.query, url, "shards", 1)
        self._broker: _Broker | None = None

    @classmethod
    def discard_broker(cls, url: str) -> None:
        """Forget the named broker and everything it holds (for test isolation)."""
        parts = urlsplit(url)
        cls._brokers.pop((parts.netloc + parts.path).strip("/"), None)

    async def connect(self) -> None:
        """Attach to the process-wide broker of this URL's name, creating it if needed."""
        broker = self._brokers.get(self.broker_name)
        if broker is None:
            broker = self._brokers[self.broker_name] = _Broker()
        self._broker = broker

    async def close(self) -> None:
        """Detach; the broker and its queued messages stay for other transports."""
        self._broker = None

    def _require_broker(self) -> _Broker:
        if self._broker is None:
            raise TransportError(
                f"{self.url} is not connected; use 'async with open_transport(url)' "
                "or await connect() first"
            )
        return self._broker

    async def publish_batch(self, source: str, events: Sequence[CloudEvent]) -> Unroutable:
        """Copy each event to every group subscribed to its type; confirmed on return.

        Returns the positions of the events no group subscribed to (not kept).
        """
        broker = self._require_broker()
        touched: set[_Group] = set()
        unroutable: set[int] = set()
        for index, event in enumerate(events):
            body = encode_structured(event)
            key = event.subject if event.subject is not None else event.source
            taken = False
            for group in broker.groups.values():
                if event.type in group.types:
                    group.append(_Message(event.type, key, body))
                    touched.add(group)
                    taken = True
            if not taken:
                unroutable.add(index)
        for group in touched:
            group.signal.notify()
        return frozenset(unroutable)

    async def declare_subscription(self, group: str, event_types: Collection[str]) -> None:
        """Start keeping events of ``event_types`` for ``group`` from now on."""
        subscription = self._require_broker().group(group, event_types, self.shards)
        self._check_shards(subscription)

    def _check_shards(self, subscription: _Group) -> None:
        if subscription.shards != self.shards:
            raise ConfigurationError(
                f"group {subscription.name!r} of memory broker {self.broker_name!r} has "
                f"{subscription.shards} shards but {self.url!r} says {self.shards}: use "
                f"?shards={subscription.shards}, or delete the subscription first"
            )

    def shard_count(self, group: str) -> int:
        """The shards of ``group``'s subscription (the URL's ``?shards=`` before it exists)."""
        subscription = None if self._broker is None else self._broker.groups.get(group)
        return self.shards if subscription is None else subscription.shards

    async def delete_subscription(self, group: str) -> None:
        """Forget ``group`` and the events kept for it."""
        self._require_broker().groups.pop(group, None)

    def backlog(self, group: str) -> int:
        """Messages kept for ``group`` and not yet acknowledged (0 for an unknown group)."""
        subscription = self._require_broker().groups.get(group)
        if subscription is None:
            return 0
        return sum(len(q.pending) + len(q.in_flight) for q in subscription.keys.values())

    async def subscribe(self, group: str, event_types: Collection[str]) -> AsyncIterator[Delivery]:
        """Deliveries for ``group``, sharing keys with the group's other consumers."""
        wanted = frozenset(event_types)
        subscription = self._require_broker().group(group, wanted, self.shards)
        consumer = next(self._consumer_ids)
        try:
            while True:
                token = subscription.take(consumer, wanted, self.prefetch)
                if token is None:
                    await subscription.signal.wait()
                    continue
                yield self._delivery(token)
        finally:
            subscription.requeue_all(consumer)
            del subscription.unacked[consumer]

    async def subscribe_shards(
        self, group: str, event_types: Collection[str], max_batch: int, shards: ShardSet
    ) -> AsyncIterator[list[Delivery]]:
        """Batches of ``group`` from the shards ``shards`` grants, in per-key order.

        A key's messages wait in the broker until taken, so a revoked shard has nothing
        received but not yielded: it is stopped as soon as the revocation is seen. A
        key of a newly granted shard starts at its oldest unacknowledged message (the
        previous holder's unacknowledged ones came back when it stopped).
        """
        wanted = frozenset(event_types)
        subscription = self._require_broker().group(group, wanted, self.shards)
        self._check_shards(subscription)
        consumer = next(self._consumer_ids)
        try:
            while True:
                for shard in shards.draining:
                    shards.stopped(shard)  # a no-op unless revoked and not stopped yet
                granted = shards.granted
                batch: list[Delivery] = []
                while len(batch) < max_batch:
                    token = subscription.take(consumer, wanted, self.prefetch, granted)
                    if token is None:
                        break
                    batch.append(shards.track(self._delivery(token), token.shard))
                if batch:
                    yield batch
                    continue
                await _first(subscription.signal.wait(), shards.changed())
        finally:
            subscription.requeue_all(consumer)
            del subscription.unacked[consumer]

    def _delivery(self, token: _InFlight) -> Delivery:
        redelivered = token.message.delivered
        token.message.delivered = True
        return Delivery(
            body=token.message.body,
            headers=dict(_HEADERS),
            redelivered=redelivered,
            routed_type=token.message.type,
            _transport_token=token,
            _transport=self,
        )

    async def ack(self, delivery: Delivery) -> None:
        """Forget the message for its group."""
        token = delivery._transport_token
        if isinstance(token, _InFlight):
            token.group.settle(token, requeue=False)

    async def nack(self, delivery: Delivery, *, requeue: bool = True) -> None:
        """Requeue the message (and later ones of its key held by the same consumer) or drop it."""
        token = delivery._transport_token
        if isinstance(token, _InFlight):
            token.group.settle(token, requeue=requeue)


async def _first(*waits: Coroutine[Any, Any, None]) -> None:
    """Until the first of ``waits`` is done; the others are cancelled."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _positive(query: str, url: str, name: str, default: int) -> int:
    value = dict(parse_qsl(query)).get(name, str(default))
    if not value.isdigit() or int(value) < 1:
        raise ConfigurationError(f"{name} in {url!r} must be a positive integer, got {value!r}")
    return int(value)
