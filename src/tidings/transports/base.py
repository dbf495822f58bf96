"""The transport interface: the one small contract every broker adapter fulfils.

A transport moves CloudEvents between contexts. The relay calls
:meth:`Transport.publish_batch`, which returns only once the broker has confirmed
every message (or raises); the consumer iterates :meth:`Transport.subscribe_batches`
(what arrived together, for one transaction) and acknowledges the deliveries after
handling them.

Topology is the transport's business: every implementation documents how it keeps
per-partition-key order (``CloudEvent.subject`` carries the key) and how one
consuming context gets its own subscription (fan-out across contexts, competing
consumers within one).

Two kinds of transport (:attr:`Transport.routes_by_type`): a **routing** broker
(RabbitMQ, NATS, Pub/Sub, the memory broker) sends a group only the types it subscribed to, so
a delivered message of another type is a misrouting; a **shared log** (the SQLite
file, a Redis stream, a Kafka topic) holds every context's events, and each group
passes over the types it does not read by their routing metadata
(:attr:`Delivery.routed_type`), counting them in :attr:`Transport.skipped`.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tidings.contracts.cloud_event import CloudEvent
from tidings.errors import TidingsError
from tidings.redaction import redact
from tidings.transports.cancellation import cancel_and_wait

if TYPE_CHECKING:
    from tidings.transports.sharding import ShardSet

#: Positions in a published batch of the events no subscription took.
Unroutable = frozenset[int]
NOTHING_UNROUTABLE: Unroutable = frozenset()


class TransportError(TidingsError):
    """The broker could not be reached or refused an operation; safe to retry."""


class PublishNotConfirmedError(TransportError):
    """Some messages of a batch were not confirmed; the whole batch must be retried."""


@dataclass(slots=True)
class Delivery:
    """One message received from the broker, not yet acknowledged.

    ``body`` and ``headers`` are what arrived, undecoded: the consumer decodes them so
    that bad input becomes a dead letter rather than a crash. ``redelivered`` is True
    when the broker says it delivered this message before. ``routed_type`` is the event
    type the broker routed or filtered the message by (routing key, subject, header or
    column), None when the transport has no such metadata: the consumer dead-letters a
    message whose body says another type. ``shard`` is the shard of a sharded
    subscription it was read from (:mod:`tidings.transports.sharding`), else None.
    """

    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    redelivered: bool = False
    routed_type: str | None = None
    shard: int | None = None
    _transport_token: Any = None
    _transport: Transport | None = None
    _settle: Callable[[int], None] | None = None

    async def ack(self) -> None:
        """Confirm the message was handled; the broker will not deliver it again."""
        if self._transport is not None:
            await self._transport.ack(self)
        self.settled()

    async def nack(self, *, requeue: bool = True) -> None:
        """Give the message back (``requeue=True``) or drop it from the subscription."""
        if self._transport is not None:
            await self._transport.nack(self, requeue=requeue)
        self.settled()

    def settled(self) -> None:
        """Tell its shard set it is no longer outstanding (once; ack and nack call it)."""
        settle, self._settle = self._settle, None
        if settle is not None and self.shard is not None:
            settle(self.shard)


async def ack_all(transport: Transport, deliveries: Sequence[Delivery]) -> None:
    """Acknowledge ``deliveries`` with :meth:`Transport.ack_many` and settle them."""
    await transport.ack_many(deliveries)
    for delivery in deliveries:
        delivery.settled()


class Transport(abc.ABC):
    """A connection to a broker. Use as ``async with open_transport(url) as transport``."""

    #: URL scheme(s) this transport serves.
    schemes: tuple[str, ...] = ()
    #: True when the broker routes each event type to the groups subscribed to it; False
    #: for a shared log that every group reads whole.
    routes_by_type: bool = True

    def __init__(self, url: str) -> None:
        self.url = url
        #: Messages of types the subscribing group does not read that a shared-log
        #: transport passed over by their routing metadata (never decoded), since opened.
        self.skipped = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact(self.url)!r})"

    async def __aenter__(self) -> Transport:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open the connection; raises :class:`TransportError` if the broker is unreachable."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the connection, waiting for in-flight confirmations."""

    @abc.abstractmethod
    async def publish_batch(self, source: str, events: Sequence[CloudEvent]) -> Unroutable:
        """Publish ``events`` of context ``source`` in order; return once all are confirmed.

        Returns the positions (in ``events``) of the events the broker confirmed but
        routed to no subscription, so they would be dropped: empty when every event
        was taken, and always empty on a shared log, which keeps every event for the
        groups declared later. Raises :class:`TransportError` if any is not confirmed:
        the caller then retries the whole batch (duplicates are possible, loss is not).
        """

    @abc.abstractmethod
    async def declare_subscription(self, group: str, event_types: Collection[str]) -> None:
        """Create the durable subscription of consuming context ``group`` if missing.

        Events of ``event_types`` published after this call are kept for the group
        even while none of its consumers runs; on a shared log a new group also gets
        what the log kept from before (it starts at the beginning). Idempotent.
        """

    @abc.abstractmethod
    async def delete_subscription(self, group: str) -> None:
        """Remove the durable subscription of ``group`` and what it kept; idempotent.

        For a context that is decommissioned (or a demo run that is over): a
        subscription nobody consumes keeps accumulating events on most brokers. Also
        how a group's shard count changes (``tidings declare APP --delete``): a sharded
        subscription is removed whole, by the count the broker records, whatever this
        URL's ``?shards=`` says.
        """

    async def connect_to_delete(self) -> None:
        """Connect for :meth:`delete_subscription` only: as :meth:`connect`, but a URL
        whose ``?shards=`` disagrees with the broker's topology is not refused, since
        deleting is how that topology changes."""
        await self.connect()

    @abc.abstractmethod
    def subscribe(self, group: str, event_types: Collection[str]) -> AsyncIterator[Delivery]:
        """Deliveries of ``event_types`` for consuming context ``group``.

        Declares the group's durable subscription if needed: every group receives
        every matching event (fan-out); consumers of one group share the work.
        """

    async def subscribe_batches(
        self, group: str, event_types: Collection[str], max_batch: int
    ) -> AsyncIterator[list[Delivery]]:
        """Like :meth:`subscribe`, but each item is every delivery ready at that moment
        (at least one, at most ``max_batch``), so a consumer can handle them together.

        The default takes deliveries from :meth:`subscribe` in a background task
        while the caller handles the previous batch; transports that receive in
        batches anyway override it to hand theirs over directly.
        """
        deliveries = self.subscribe(group, event_types)
        ready: asyncio.Queue[Delivery | Exception | None] = asyncio.Queue(max_batch)
        reader = asyncio.create_task(_read_into(deliveries, ready))
        try:
            while True:
                arrival = await ready.get()
                batch: list[Delivery] = []
                while isinstance(arrival, Delivery):
                    batch.append(arrival)
                    if len(batch) == max_batch or ready.empty():
                        break
                    arrival = ready.get_nowait()
                if batch:
                    yield batch
                if arrival is None:
                    return
                if isinstance(arrival, Exception):
                    raise arrival
        finally:
            # Again until it ends: a client library can swallow the cancellation of its
            # read (tidings.transports.cancellation).
            await cancel_and_wait(reader)

    def shard_count(self, group: str) -> int:
        """Shards of ``group``'s subscription (after :meth:`declare_subscription`).

        1, the default, means one subscription that the broker itself keeps in order
        across a group's consumers or that one consumer reads. A sharded transport
        returns its count, and the consumer then leases shards in its database and reads
        them through :meth:`subscribe_shards` (:mod:`tidings.transports.sharding`).
        """
        return 1

    def subscribe_shards(
        self, group: str, event_types: Collection[str], max_batch: int, shards: ShardSet
    ) -> AsyncIterator[list[Delivery]]:
        """Like :meth:`subscribe_batches`, reading only the shards ``shards`` grants.

        Each delivery is :meth:`ShardSet.track`\\ ed with its shard; a revoked shard is
        read no more (then :meth:`ShardSet.stopped`), a granted one is read from its
        oldest unacknowledged message. Only sharded transports implement it.
        """
        raise NotImplementedError(f"{type(self).__name__} has no sharded subscriptions")

    @abc.abstractmethod
    async def ack(self, delivery: Delivery) -> None:
        """Acknowledge ``delivery`` (called through :meth:`Delivery.ack`)."""

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge several deliveries at once, in the order given.

        Transports whose broker acknowledges in bulk (RabbitMQ's ``multiple`` flag,
        Redis' ``XACK`` of many ids) override this to save a frame or a round trip per
        message; the default acknowledges one by one.
        """
        for delivery in deliveries:
            await self.ack(delivery)

    @abc.abstractmethod
    async def nack(self, delivery: Delivery, *, requeue: bool = True) -> None:
        """Reject ``delivery`` (called through :meth:`Delivery.nack`)."""


async def _read_into(
    deliveries: AsyncIterator[Delivery], ready: asyncio.Queue[Delivery | Exception | None]
) -> None:
    """Move deliveries to ``ready``; then None when they end, or what stopped them."""
    try:
        async for delivery in deliveries:
            await ready.put(delivery)
    except Exception as error:  # e.g. TransportError: the reader of ``ready`` raises it
        await ready.put(error)
        return
    finally:
        # Cancelled while waiting for room, the subscription still ends now (a broker
        # channel closes and hands its unacknowledged messages back), not at GC.
        close = getattr(deliveries, "aclose", None)
        if close is not None:
            await close()
    await ready.put(None)
