"""An in-process broker for tests and single-process applications (``memory://``).

Brokers are shared by name within the process: every ``MemoryTransport`` opened on
``memory://`` talks to the same default broker, and every one opened on
``memory://orders`` to the broker named ``orders``, so a producer and a consumer
wired separately still meet. Nothing survives the process. This module is the
transport; the broker's groups, per-key queues and delivery tokens are in
:mod:`~tidings.transports.memory_broker`.

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
import itertools
from collections.abc import AsyncIterator, Collection, Coroutine, Sequence
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from tidings.contracts.cloud_event import CloudEvent
from tidings.contracts.cloudevents import STRUCTURED_CONTENT_TYPE, encode_structured
from tidings.errors import ConfigurationError
from tidings.transports.base import Delivery, Transport, TransportError, Unroutable
from tidings.transports.memory_broker import Broker, Group, InFlight, Message
from tidings.transports.sharding import ShardSet

_HEADERS = {"content-type": STRUCTURED_CONTENT_TYPE}
DEFAULT_PREFETCH = 64


class MemoryTransport(Transport):
    """The in-process broker named by the URL (``memory://`` or ``memory://name``)."""

    schemes = ("memory",)

    _brokers: ClassVar[dict[str, Broker]] = {}
    _consumer_ids: ClassVar[itertools.count[int]] = itertools.count(1)

    def __init__(self, url: str) -> None:
        super().__init__(url)
        parts = urlsplit(url)
        self.broker_name = (parts.netloc + parts.path).strip("/")
        self.prefetch = _positive(parts.query, url, "prefetch", DEFAULT_PREFETCH)
        self.shards = _positive(parts.query, url, "shards", 1)
        self._broker: Broker | None = None

    @classmethod
    def discard_broker(cls, url: str) -> None:
        """Forget the named broker and everything it holds (for test isolation)."""
        parts = urlsplit(url)
        cls._brokers.pop((parts.netloc + parts.path).strip("/"), None)

    async def connect(self) -> None:
        """Attach to the process-wide broker of this URL's name, creating it if needed."""
        broker = self._brokers.get(self.broker_name)
        if broker is None:
            broker = self._brokers[self.broker_name] = Broker()
        self._broker = broker

    async def close(self) -> None:
        """Detach; the broker and its queued messages stay for other transports."""
        self._broker = None

    def _require_broker(self) -> Broker:
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
        touched: set[Group] = set()
        unroutable: set[int] = set()
        for index, event in enumerate(events):
            body = encode_structured(event)
            key = event.subject if event.subject is not None else event.source
            taken = False
            for group in broker.groups.values():
                if event.type in group.types:
                    group.append(Message(event.type, key, body))
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

    def _check_shards(self, subscription: Group) -> None:
        if subscription.shards != self.shards:
            raise ConfigurationError(
                f"group {subscription.name!r} of memory broker {self.broker_name!r} has "
                f"{subscription.shards} shards but {self.url!r} says {self.shards}: use "
                f"?shards={subscription.shards}, or delete the subscription first "
                "(transport.delete_subscription(group): the broker lives in this process)"
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

    def _delivery(self, token: InFlight) -> Delivery:
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
        if isinstance(token, InFlight):
            token.group.settle(token, requeue=False)

    async def nack(self, delivery: Delivery, *, requeue: bool = True) -> None:
        """Requeue the message (and later ones of its key held by the same consumer) or drop it."""
        token = delivery._transport_token
        if isinstance(token, InFlight):
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
