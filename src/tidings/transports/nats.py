"""NATS JetStream transport (nats-py): one stream for all contexts, a durable consumer per group.

This module consumes; connecting is in :mod:`~tidings.transports.nats_connection`,
URL options and names in :mod:`~tidings.transports.nats_options`, publishing in
:mod:`~tidings.transports.nats_publish`, the stream and consumers in
:mod:`~tidings.transports.nats_topology`.

Subjects
    An event of context ``source`` and type ``type`` is published on
    ``tidings.<source>.<type>``, e.g. ``tidings.catalog.catalog.product.updated``. The
    source is one subject token (dots in a context name become ``_`` in the subject
    only; the CloudEvents ``source`` is unchanged); the type may span several tokens.
    Types and sources with whitespace or the wildcards ``*`` and ``>`` are refused.
    With ``?shards=N`` > 1 the subject is ``tidings.<source>.<shard>.<type>``, shard =
    ``partition_slot(partition key) % N``, and a group has a durable consumer
    ``<group>-<shard>`` per shard, read by one process at a time
    (:mod:`~tidings.transports.nats_shards`); the stream's description records N and a
    URL disagreeing with it is refused.

Stream
    DESIGN.md describes "a stream per producing context". On JetStream that is the
    subject namespace ``tidings.<source>.>`` inside **one stream** (``TIDINGS``,
    ``?stream=`` in the URL) capturing ``tidings.>``, and not one JetStream stream per
    context, because a consuming context must be able to declare its subscription
    before any producer ran and without knowing who produces a type: its consumer
    filters on ``tidings.*.<type>`` in the one stream, whoever publishes it later.
    Producers and consumers both create the stream when it is missing. It uses
    **interest retention**: a message is kept until every group whose filter matches
    it has acknowledged it, so storage follows consumer lag, and an event no group
    subscribed to is discarded at once, just like an unbound routing key on RabbitMQ.
    So before publishing a subject that no consumer was seen filtering, the transport
    lists the stream's consumers (one round trip, then remembered): events of
    subjects nobody takes are not sent (the stream would drop them, and remember
    their ``Nats-Msg-Id`` for the duplicate window, dropping them again when sent
    later) but reported unroutable, and the relay keeps them.

Messages
    CloudEvents binary mode in NATS headers: ``ce-<attribute>``, ``content-type`` for
    ``datacontenttype``, the JSON payload as body (the CloudEvents NATS binding).
    ``Nats-Msg-Id`` is the event id: JetStream drops a second copy published within the
    stream's duplicate window (``?duplicate_window=``, 120 s), so a relay retrying a
    batch after a lost ack stores each event once.

Publishing
    The whole batch is sent in order with nats-py's core ``Client.publish`` (no round
    trip per message), each message with ``Nats-Expected-Stream`` (the configured
    stream) and the batch's own reply subject, which is what JetStream's
    ``publish_async`` sends; the acknowledgements are then awaited together, counted
    per batch rather than with a future and an inbox per message. Every message sent
    must be acknowledged by the stream: any other reply (an error, no stream), any
    error, or ``?confirm_timeout=`` (30 s) elapsing raises
    :class:`PublishNotConfirmedError` for the whole batch, and the next batch checks
    the stream and its consumers again. While the client is reconnecting
    :class:`TransportError` is raised at once instead of buffering.

Consumers
    A durable pull consumer per group (named after the group, dots as ``_``),
    explicit acks, ``deliver_policy=all`` (a group declared late still gets what the
    stream holds; consumers declared by older versions keep their ``new``),
    ``ack_wait`` (``?ack_wait=``, 30 s: an unacknowledged message is redelivered after
    it), unlimited ``max_deliver`` by default (tidings' consumer dead-letters poison
    messages itself; a broker-side limit would strand them), ``max_ack_pending``
    (``?max_ack_pending=``, 1000).
    Messages are fetched in batches of ``?prefetch=`` (256). ``nack(requeue=True)`` is a
    ``nak`` (redelivered at once), ``nack(requeue=False)`` a ``term``. When a
    subscription is closed, messages fetched but not handed out are ``nak``-ed so
    another consumer gets them without waiting for ``ack_wait``.

    NATS 2.10+ filters a consumer on several subjects. On NATS 2.9 a consumer has one
    filter: a group subscribed to several types then gets an unfiltered consumer and
    tidings acknowledges the other types itself (correct and ordered, but every
    event of the stream crosses the wire to that group).

Per-key order
    The stream keeps publication order and one consumer process fetching in sequence
    sees each key's events in that order. Several processes pulling from one durable
    share its messages and may finish one key's events out of order; run one consumer
    process per group where order matters (NATS 2.9 has no single-active-consumer
    mode), shard the stream (``?shards=``), or set ``?max_ack_pending=1`` for strict
    order at one message per round trip. A ``nak`` or an ``ack_wait`` expiry redelivers
    a message after later ones.

URL options (query string, stripped before connecting): ``stream``, ``subject_prefix``
(``tidings``: the first subject token, so that several environments can share one
NATS account with a stream each), ``replicas``,
``duplicate_window``, ``prefetch``, ``ack_wait``, ``max_deliver``, ``max_ack_pending``, ``shards``,
``connect_timeout``, ``confirm_timeout``, and for TLS ``tls``, ``ca``, ``cert``, ``key``.

TLS
    ``nats://host:4222?tls=true&ca=ca.pem&cert=client.pem&key=client.key``: the client
    upgrades the connection when the server's INFO asks for TLS and refuses a server
    that does not (nats-py alone would carry on in clear text); ``?ca=`` or ``?cert=``
    alone imply ``tls=true``. The server's certificate must chain to ``?ca=`` (else the system's
    CAs) and name the URL's host; a failed verification raises
    :class:`~tidings.errors.TlsError` at the first refused handshake (``docs/tls.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from tidings.contracts.cloud_event import CloudEvent
from tidings.errors import ConfigurationError
from tidings.transports.base import (
    NOTHING_UNROUTABLE,
    Delivery,
    PublishNotConfirmedError,
    Transport,
    TransportError,
    Unroutable,
)
from tidings.transports.cancellation import raise_if_cancelled
from tidings.transports.nats_connection import CLOSE_ERRORS, CLOSE_TIMEOUT, Connection
from tidings.transports.nats_options import describe, parse_url
from tidings.transports.nats_publish import BROKER_ERRORS, Publisher, encode_batch
from tidings.transports.nats_shards import FETCH_WAIT, ShardedRead, one_by_one
from tidings.transports.nats_topology import Subscription, Topology
from tidings.transports.sharding import ShardSet


@dataclass(slots=True)
class _Token:
    """What a Delivery needs to settle its message; ``settled`` lets close() nak the rest."""

    msg: Msg
    settled: bool = False


@dataclass(slots=True)
class _Fetched:
    """Messages fetched but not yet handed out, nak-ed if the subscription closes early."""

    tokens: list[_Token] = field(default_factory=list)


class NatsTransport(Transport):
    """Integration events over NATS JetStream: ``nats://[user:password@]host:port?options``."""

    schemes = ("nats",)

    def __init__(self, url: str) -> None:
        super().__init__(url)
        servers, self.options = parse_url(url)
        self._where = describe(url)
        self._connection = Connection(servers, self.options, self._where)
        self._stream_ready = False
        self._publisher = Publisher(self.options, self._where)
        self._topology = Topology(self.options, self._where)
        # One batch at a time: batches from one relay stay in order on the wire.
        self._publish_lock = asyncio.Lock()

    async def connect(self) -> None:
        """Connect and make sure the stream exists; raises :class:`TransportError` if not."""
        await self._ensure_stream()

    async def close(self) -> None:
        """Close the connection after the batch being published (if any) is acknowledged."""
        async with self._publish_lock:
            self._stream_ready = False
            await self._connection.close()

    async def publish_batch(self, source: str, events: Sequence[CloudEvent]) -> Unroutable:
        """Publish ``events`` in order, awaiting every JetStream acknowledgement together."""
        if not events:
            return NOTHING_UNROUTABLE
        messages = encode_batch(self.options.subject_prefix, source, events, self.options.shards)
        async with self._publish_lock:
            js = await self._ensure_stream()
            client = self._client
            if client is None or not client.is_connected:
                raise TransportError(
                    f"the connection to NATS at {self._where} is down (reconnecting); "
                    "retry the batch later"
                )
            try:
                return await self._publisher.send(client, js, messages)
            except PublishNotConfirmedError:
                # The stream may have been deleted or changed: check it again next time.
                self._stream_ready = False
                self._publisher.forget_interest()
                raise

    async def declare_subscription(self, group: str, event_types: Collection[str]) -> None:
        """Create or update the group's durable pull consumer filtered on its types."""
        await self._declare_consumer(group, event_types)

    async def connect_to_delete(self) -> None:
        """Connect without checking the stream's shard count against ``?shards=``
        (:meth:`delete_subscription` reads it from the stream)."""
        await self._connection.open()

    async def delete_subscription(self, group: str) -> None:
        """Delete the group's durable consumer(s) (interest retention then frees their
        events), and a sharded stream left without consumers with its recorded count
        (:meth:`~tidings.transports.nats_topology.Topology.delete_consumers`)."""
        if await self._topology.delete_consumers(self._jetstream(), group):
            self._stream_ready = False  # made again, with this URL's count, when used
            self._publisher.forget_interest()

    async def subscribe(self, group: str, event_types: Collection[str]) -> AsyncIterator[Delivery]:
        """Deliveries for the group, fetched in batches of ``?prefetch=``.

        Raises :class:`TransportError` if the connection closes for good; subscribe again
        and unacknowledged messages come back after ``ack_wait``.
        """
        if self.options.shards > 1:
            batches = await self._sharded(group, event_types, self.options.prefetch, None)
            async for delivery in one_by_one(batches, self._give_back):
                yield delivery
            return
        declared = await self._declare_consumer(group, event_types)
        durable, client_filter = declared.consumers[0].durable_name, declared.client_filter
        assert durable is not None
        js = self._jetstream()
        try:
            async with asyncio.timeout(self.options.connect_timeout):
                subscription = await js.pull_subscribe_bind(
                    durable=durable, stream=self.options.stream
                )
        except BROKER_ERRORS as exc:
            raise TransportError(
                f"cannot bind to consumer {durable!r} on NATS at {self._where}: {exc!r}; "
                "subscribe again when the server is reachable"
            ) from exc
        prefix = self.options.subject_prefix
        fetched = _Fetched()
        try:
            while True:
                raise_if_cancelled()  # one the last fetch swallowed (nats-py can)
                try:
                    batch = await subscription.fetch(self.options.prefetch, timeout=FETCH_WAIT)
                except TimeoutError:
                    # Nothing new: ask again. nats-py raises its own TimeoutError or,
                    # when its no-wait probe used up the deadline, asyncio's.
                    continue
                except BROKER_ERRORS as exc:
                    raise TransportError(
                        f"fetching from consumer {durable!r} on NATS at {self._where} "
                        f"failed: {exc!r}; subscribe again (unacknowledged messages are "
                        "redelivered after ack_wait)"
                    ) from exc
                fetched.tokens = [_Token(msg) for msg in batch]
                # Past half of ack_wait the server is about to redeliver what is still
                # buffered; give it back and fetch afresh rather than handle it late.
                stale_at = time.monotonic() + self.options.ack_wait / 2
                while fetched.tokens:
                    if time.monotonic() > stale_at:
                        await self._give_back(fetched.tokens)
                        break
                    token = fetched.tokens[0]
                    if (
                        client_filter is not None
                        and _type_of(token.msg, prefix) not in client_filter
                    ):
                        fetched.tokens.pop(0)
                        await self._settle(token, "acknowledge", token.msg.ack)
                        continue
                    yield Delivery(
                        body=token.msg.data,
                        headers=dict(token.msg.headers or {}),
                        redelivered=token.msg.metadata.num_delivered > 1,
                        routed_type=_type_of(token.msg, prefix),
                        _transport_token=token,
                        _transport=self,
                    )
                    # Popped only now: a delivery the caller left unsettled when it
                    # stopped iterating is given back with the rest.
                    fetched.tokens.pop(0)
        finally:
            await self._give_back(fetched.tokens)
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await subscription.unsubscribe()
            except CLOSE_ERRORS:
                pass  # the connection is gone, and the subscription with it

    def shard_count(self, group: str) -> int:
        """``?shards=`` (checked against the stream's record by :meth:`connect`)."""
        return self.options.shards

    async def subscribe_batches(
        self, group: str, event_types: Collection[str], max_batch: int
    ) -> AsyncIterator[list[Delivery]]:
        """Batches of deliveries; a sharded group's from all of its shards' consumers."""
        if self.options.shards == 1:
            # An async generator (Transport's default), closed with ours.
            batches = cast(
                AsyncGenerator[list[Delivery], None],
                super().subscribe_batches(group, event_types, max_batch),
            )
        else:
            batches = await self._sharded(group, event_types, max_batch, None)
        async with contextlib.aclosing(batches):
            async for batch in batches:
                yield batch

    async def subscribe_shards(
        self, group: str, event_types: Collection[str], max_batch: int, shards: ShardSet
    ) -> AsyncIterator[list[Delivery]]:
        """Batches from the consumers of the shards ``shards`` grants (see
        :mod:`~tidings.transports.nats_shards`): a granted shard's unacknowledged
        messages first, a revoked one stopped once what it fetched was handed over."""
        if shards.count != self.options.shards:
            raise ConfigurationError(
                f"the ShardSet has {shards.count} shards and the NATS URL {self.options.shards}"
            )
        batches = await self._sharded(group, event_types, max_batch, shards)
        async with contextlib.aclosing(batches):
            async for batch in batches:
                yield batch

    async def _sharded(
        self, group: str, event_types: Collection[str], max_batch: int, shards: ShardSet | None
    ) -> AsyncGenerator[list[Delivery], None]:
        declared = await self._declare_consumer(group, event_types)
        client = self._client
        assert client is not None
        prefix = self.options.subject_prefix

        async def admit(msg: Msg, shard: int) -> Delivery | None:
            routed = _type_of(msg, prefix, sharded=True)
            token = _Token(msg)
            if declared.client_filter is not None and routed not in declared.client_filter:
                await self._settle(token, "acknowledge", msg.ack)
                return None
            return Delivery(
                body=msg.data,
                headers=dict(msg.headers or {}),
                redelivered=msg.metadata.num_delivered > 1,
                routed_type=routed,
                _transport_token=token,
                _transport=self,
            )

        async def give_back(messages: list[Msg]) -> None:
            await self._give_back([_Token(msg) for msg in messages])

        read = ShardedRead(
            js=self._jetstream(),
            client=client,
            topology=self._topology,
            options=self.options,
            where=self._where,
            subscription=declared,
            admit=admit,
            give_back=give_back,
            shards=shards,
        )
        return read.batches(max_batch)

    async def ack(self, delivery: Delivery) -> None:
        """Acknowledge the message: JetStream will not deliver it to this group again."""
        token: _Token = delivery._transport_token
        await self._settle(token, "acknowledge", token.msg.ack)

    async def nack(self, delivery: Delivery, *, requeue: bool = True) -> None:
        """``nak`` (redeliver now) or, without ``requeue``, ``term`` (never redeliver)."""
        token: _Token = delivery._transport_token
        await self._settle(token, "reject", token.msg.nak if requeue else token.msg.term)

    async def _settle(self, token: _Token, verb: str, action: Any) -> None:
        token.settled = True
        try:
            await action()
        except BROKER_ERRORS as exc:
            raise TransportError(
                f"could not {verb} a message on NATS at {self._where}: {exc!r}; it will "
                "be delivered again after ack_wait, which the inbox makes harmless"
            ) from exc

    async def _give_back(self, tokens: list[_Token]) -> None:
        for token in tokens:
            if token.settled:
                continue
            token.settled = True
            try:
                await token.msg.nak()
            except CLOSE_ERRORS:
                return  # the connection is gone: ack_wait will redeliver them

    async def _declare_consumer(self, group: str, event_types: Collection[str]) -> Subscription:
        """The group's consumer(s), and the types to filter client-side."""
        js = await self._ensure_stream()
        client = self._client
        assert client is not None
        return await self._topology.declare_consumer(js, client, group, event_types)

    async def _ensure_stream(self) -> JetStreamContext:
        js, new = await self._connection.open()
        if new:
            self._stream_ready = False
        if not self._stream_ready:
            await self._topology.ensure_stream(js)
            self._stream_ready = True
        return js

    @property
    def _client(self) -> NatsClient | None:
        return self._connection.client

    def _jetstream(self) -> JetStreamContext:
        return self._connection.jetstream()


def _type_of(msg: Msg, prefix: str, sharded: bool = False) -> str:
    # <prefix>.<source>.<type...>, or <prefix>.<source>.<shard>.<type...>
    return msg.subject[len(prefix) + 1 :].split(".", 2 if sharded else 1)[-1]
