"""RabbitMQ transport (aio-pika): a durable topic exchange and one quorum queue per context.

This module connects and holds the channels; URL options and names are in
:mod:`~tidings.transports.rabbitmq_options`, the exchange, queues and bindings in
:mod:`~tidings.transports.rabbitmq_topology`, publishing in
:mod:`~tidings.transports.rabbitmq_publish`, consuming and acknowledging in
:mod:`~tidings.transports.rabbitmq_consume`, consuming the shards of a sharded group
in :mod:`~tidings.transports.rabbitmq_shards`.

Topology
    Producers publish to one durable **topic exchange** (``tidings.integration`` by
    default, ``?exchange=`` in the URL) with the event type as routing key. Each
    consuming context (``group``) owns one durable **quorum queue** ``tidings.<group>``
    bound once per event type it handles: every group gets every matching event
    (fan-out), and the processes of one group compete for the messages of its queue.
    Declaring only adds bindings: a type a group stops handling keeps arriving (and is
    dead-lettered as unknown by the consumer) until its binding is removed by hand.

Messages
    CloudEvents binary mode: attributes in AMQP headers named ``cloudEvents:<attribute>``
    (the prefix of the CloudEvents AMQP binding), ``datacontenttype`` as the AMQP
    ``content_type`` property, the JSON payload as body. Messages are persistent
    (``delivery_mode=2``), ``message_id`` is the event id, ``type`` the event type and
    ``app_id`` the producing context. :attr:`Delivery.headers` carries the AMQP headers
    plus ``content-type``, so the binary-mode decoder sees every attribute.

Publishing
    A batch is published on a channel in confirm mode without waiting between
    messages; then every confirmation is awaited together (pipelined confirms). A
    quorum queue confirms only once a majority of its replicas has the message on
    disk. Any nack, lost channel or the ``?confirm_timeout=`` (30 s) elapsing raises
    :class:`PublishNotConfirmedError`, and the relay retries the whole batch.
    Messages are published with ``mandatory=True``: an event that no queue is bound
    for comes back as ``basic.return`` before the confirm of the same message on the
    same channel, so detecting it costs no round trip. ``publish_batch`` reports such
    events as unroutable and the relay keeps them (see the relay's "Unroutable events").

Failures
    The connection is a plain (non-robust) one: every operation either finishes or
    raises :class:`TransportError` within bounded time (``?connect_timeout=``, 5 s;
    ``?confirm_timeout=``). The next call reconnects. A consumer whose connection is lost
    sees :meth:`subscribe` raise :class:`TransportError`; it subscribes again and the
    broker redelivers every unacknowledged message.

Per-key order
    A queue delivers in order to one consumer, so a group with a single consumer
    process receives each key's events in commit order. With competing consumers,
    RabbitMQ hands consecutive messages to different processes, which can then finish
    them out of order. ``?single_active_consumer=true`` declares the queue with
    ``x-single-active-consumer``: only one consumer of the group receives messages at a
    time and the others are hot standbys that take over when it goes away. That keeps
    order at the cost of parallelism (one process does all the work of the group).
    The flag is part of the queue's identity: changing it on an existing queue makes
    the declaration fail until the queue is deleted.
    For order *and* parallelism, shard the group (``?shards=N``, below).
    Messages given back with ``nack(requeue=True)`` return to the queue and may be
    delivered after later messages of their key; tidings' consumer retries handlers
    in-process rather than requeueing, so this only happens when a consumer dies.

Shards
    ``?shards=N`` (N > 1; default 1, the layout above) splits a group's subscription
    into N quorum queues ``tidings.<group>.<i>`` (``i`` = 0 .. N-1), each declared with
    ``x-single-active-consumer`` whatever the URL says. The topic exchange feeds the
    group's direct **shard exchange** ``tidings.<group>.shards`` through one
    exchange-to-exchange binding per subscribed type. Every message tidings publishes
    names its bucket in the ``BCC`` header (routing key ``tidings.bucket.<b>``, ``b`` =
    ``partition_slot(key) % 256``, the key being the subject, else the source; RabbitMQ
    routes on ``BCC`` keys and strips the header), and bucket ``b`` is bound to shard
    ``b % N``: a key's shard is a function of the key and N, the same after the
    topology is declared again or the broker restarts (a consistent-hash exchange maps
    keys by the order of its bindings, which a restart changes). A message without a
    bucket key (from another publisher) reaches shard 0 through the shard exchange's
    alternate exchange, in order, never dropped; with no shard queue bound the message
    is unroutable and returned to the publisher (``mandatory``). The buckets are bound
    before any type, so a key never changes shard while the topology is being built.
    The shard count is recorded in the alternate exchange's name,
    ``tidings.<group>.shards:<N>`` (``alternate-exchange`` is the one exchange argument
    RabbitMQ compares on redeclaration); a URL with another ``?shards=``, or an
    unsharded URL for a sharded group (and the reverse), raises
    :class:`~tidings.errors.ConfigurationError` before anything is
    declared. :meth:`RabbitMQTransport.subscribe_shards` consumes the granted shard
    queues on one channel (one ``basic.consume`` each, ``?prefetch=`` each) and cancels
    a revoked shard's consumer (:mod:`~tidings.transports.rabbitmq_shards`);
    :meth:`~RabbitMQTransport.subscribe_batches` reads every shard. When a consumer
    process dies, each quorum queue returns what it had delivered unacknowledged and
    delivers it again, in its original order, before anything newer (a test SIGKILLs a
    consumer to prove it). Keep one group's queue names free: an unsharded group named
    ``<group>.<i>`` would share ``tidings.<group>.<i>``.

Redelivery limits
    RabbitMQ 4.0+ gives quorum queues a default delivery limit of 20 after which a
    message is dropped. ``?delivery_limit=N`` sets ``x-delivery-limit`` explicitly
    (e.g. a large number) when declaring the queue; without it the broker's default
    applies. tidings' consumer dead-letters poison messages itself.

TLS
    ``amqps://user:password@host:5671/vhost?ca=ca.pem&cert=client.pem&key=client.key``:
    the broker's certificate must chain to ``?ca=`` (else the system's CAs) and name the
    URL's host; ``?cert=``/``?key=`` present a client certificate (see ``docs/tls.md``).
    A certificate that does not verify raises :class:`~tidings.errors.TlsError` at
    once instead of a retryable :class:`TransportError`.

URL options (query string, removed before the URL reaches aio-pika): ``exchange``,
``prefetch`` (256; unacknowledged messages per consumer), ``single_active_consumer``,
``delivery_limit``, ``shards``, ``connect_timeout``, ``confirm_timeout``, ``ca``, ``cert``,
``key``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Collection, Sequence
from typing import cast

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection

from tidings.contracts.cloud_event import CloudEvent
from tidings.errors import ConfigurationError
from tidings.tls import tls_failure
from tidings.transports import rabbitmq_consume, rabbitmq_shards, rabbitmq_topology
from tidings.transports.base import (
    NOTHING_UNROUTABLE,
    Delivery,
    Transport,
    TransportError,
    Unroutable,
)
from tidings.transports.rabbitmq_consume import Received
from tidings.transports.rabbitmq_options import (
    BROKER_ERRORS,
    DEFAULT_EXCHANGE,
    HEADER_PREFIX,
    QUEUE_PREFIX,
    RabbitMQOptions,
    close_quietly,
    describe,
    parse_url,
    queue_name,
    routing_key,
)
from tidings.transports.rabbitmq_publish import encode, encode_batch, publish_confirmed
from tidings.transports.sharding import ShardSet

__all__ = [
    "DEFAULT_EXCHANGE",
    "HEADER_PREFIX",
    "QUEUE_PREFIX",
    "RabbitMQOptions",
    "RabbitMQTransport",
]

# The names these helpers had before the transport was split into modules; the
# AsyncAPI bindings, test support and benchmarks import them from here.
_encode = encode
_parse_url = parse_url
_queue_name = queue_name
_routing_key = routing_key


class RabbitMQTransport(Transport):
    """Integration events over RabbitMQ: ``amqp://user:password@host:port/vhost?options``."""

    schemes = ("amqp", "amqps")

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._client_url, self.options = parse_url(url)
        self._where = describe(url)
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        # The publishing channel's aiormq channel: publishing goes straight to it, with
        # no aio-pika message object per event.
        self._publishing: aiormq.Channel | None = None
        self._connect_lock = asyncio.Lock()
        self._ssl_context: ssl.SSLContext | None = (
            self.options.tls.context() if self.options.tls is not None else None
        )
        # One batch at a time: batches from one relay stay in order on the wire.
        self._publish_lock = asyncio.Lock()

    async def connect(self) -> None:
        """Connect and declare the exchange; raises :class:`TransportError` if unreachable."""
        await self._publisher()

    async def close(self) -> None:
        """Close the connection after the batch being published (if any) is confirmed."""
        async with self._publish_lock:
            connection, self._connection = self._connection, None
            self._channel = self._publishing = None
            if connection is not None:
                await close_quietly(connection)

    async def publish_batch(self, source: str, events: Sequence[CloudEvent]) -> Unroutable:
        """Publish ``events`` in order with pipelined publisher confirms (mandatory)."""
        if not events:
            return NOTHING_UNROUTABLE
        messages = encode_batch(source, events)
        async with self._publish_lock:
            channel = await self._publisher()
            return await publish_confirmed(
                channel,
                self.options.exchange,
                messages,
                confirm_timeout=self.options.confirm_timeout,
                where=self._where,
                drop_channel=self._drop_publisher,
            )

    async def declare_subscription(self, group: str, event_types: Collection[str]) -> None:
        """Declare the group's quorum queue ``tidings.<group>`` bound to each event type."""
        connection = await self._connect()
        await rabbitmq_topology.declare_subscription(
            connection, self.options, self._where, group, event_types
        )

    async def delete_subscription(self, group: str) -> None:
        """Delete the group's queue ``tidings.<group>`` (or its shard queues and hash
        exchange) and the messages it holds."""
        connection = await self._connect()
        await rabbitmq_topology.delete_subscription(connection, self.options, self._where, group)

    async def subscribe(self, group: str, event_types: Collection[str]) -> AsyncIterator[Delivery]:
        """Deliveries from the group's queue, at most ``?prefetch=`` unacknowledged at once.

        Raises :class:`TransportError` when the connection is lost; subscribe again and
        every message not acknowledged is delivered again.
        """
        async for batch in self.subscribe_batches(group, event_types, self.options.prefetch):
            for delivery in batch:
                yield delivery

    async def subscribe_batches(
        self, group: str, event_types: Collection[str], max_batch: int
    ) -> AsyncIterator[list[Delivery]]:
        """Every message received while the previous batch was handled, as one batch."""
        await self.declare_subscription(group, event_types)
        connection = await self._connect()
        if self.options.shards > 1:
            # One consumer reading the whole group: every shard queue at once.
            batches = rabbitmq_shards.consume_shards(
                self, connection, self.options, self._where, group, max_batch, None
            )
        else:
            batches = rabbitmq_consume.consume_batches(
                self, connection, self.options, self._where, queue_name(group), max_batch
            )
        try:
            async for batch in batches:
                yield batch
        finally:
            await batches.aclose()

    def shard_count(self, group: str) -> int:
        """``?shards=`` (1 by default); :meth:`declare_subscription` refuses a count
        that disagrees with the one the group's topology records."""
        return self.options.shards

    async def subscribe_shards(
        self, group: str, event_types: Collection[str], max_batch: int, shards: ShardSet
    ) -> AsyncIterator[list[Delivery]]:
        """Batches from the shard queues ``shards`` grants, following its changes: a
        granted shard gets a consumer, a revoked one has it cancelled, then what it
        delivered is yielded, then :meth:`ShardSet.stopped` (see "Shards")."""
        if shards.count != self.options.shards:
            raise ConfigurationError(
                f"the shard set of {group!r} has {shards.count} shards, the RabbitMQ URL "
                f"?shards={self.options.shards}: build it from shard_count()"
            )
        await self.declare_subscription(group, event_types)
        connection = await self._connect()
        batches = rabbitmq_shards.consume_shards(
            self, connection, self.options, self._where, group, max_batch, shards
        )
        try:
            async for batch in batches:
                yield batch
        finally:
            await batches.aclose()

    async def ack(self, delivery: Delivery) -> None:
        """Acknowledge on the channel the message arrived on."""
        await rabbitmq_consume.acknowledge(delivery._transport_token, multiple=False)

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """One ``multiple`` ack for the leading run of the channel's unacknowledged
        messages that are all in ``deliveries``; single acks for the rest."""
        received: list[Received] = [delivery._transport_token for delivery in deliveries]
        await rabbitmq_consume.acknowledge_many(received)

    async def nack(self, delivery: Delivery, *, requeue: bool = True) -> None:
        """Return the message to the queue, or drop it when ``requeue`` is False."""
        await rabbitmq_consume.reject(delivery._transport_token, requeue=requeue)

    async def _connect(self) -> AbstractConnection:
        async with self._connect_lock:
            if self._connection is not None and not self._connection.is_closed:
                return self._connection
            self._channel = self._publishing = None
            timeout = self.options.connect_timeout
            try:
                async with asyncio.timeout(timeout):
                    connection = await aio_pika.connect(
                        self._client_url, timeout=timeout, ssl_context=self._ssl_context
                    )
            except BROKER_ERRORS as exc:
                refused = tls_failure(exc, self._where.split("/", 1)[0])  # host:port
                if refused is not None:
                    raise refused from exc
                raise TransportError(
                    f"cannot connect to RabbitMQ at {self._where}: {exc!r}; check that the "
                    "broker runs and the URL (user, password, vhost) is right; the relay "
                    "retries with backoff and nothing is lost meanwhile"
                ) from exc
            self._connection = connection
            return connection

    async def _publisher(self) -> aiormq.Channel:
        """An open confirm-mode channel with the exchange declared, (re)connecting if needed."""
        if (
            self._publishing is not None
            and self._channel is not None
            and not self._channel.is_closed
            and self._connection is not None
            and not self._connection.is_closed
        ):
            return self._publishing
        connection = await self._connect()
        try:
            async with asyncio.timeout(self.options.connect_timeout):
                channel = await connection.channel(publisher_confirms=True)
                await rabbitmq_topology.declare_exchange(channel, self.options)
                publishing = cast(aiormq.Channel, await channel.get_underlay_channel())
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            raise ConfigurationError(
                f"exchange {self.options.exchange!r} exists on RabbitMQ at {self._where} "
                f"with other settings ({exc}); tidings needs a durable topic exchange: "
                "delete it or choose another name with ?exchange="
            ) from exc
        except BROKER_ERRORS as exc:
            raise TransportError(
                f"cannot open a publishing channel on RabbitMQ at {self._where}: {exc!r}; "
                "retry when the broker is reachable"
            ) from exc
        self._channel, self._publishing = channel, publishing
        return publishing

    async def _drop_publisher(self) -> None:
        """Forget the publishing channel after a failure, so the next batch starts clean."""
        channel, self._channel, self._publishing = self._channel, None, None
        if channel is not None and not await close_quietly(channel):
            # The broker did not answer a channel close: treat the connection as dead.
            connection, self._connection = self._connection, None
            if connection is not None:
                await close_quietly(connection)
