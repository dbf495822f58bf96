"""RabbitMQ transport (aio-pika): a durable topic exchange and one quorum queue per context.

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
    Messages given back with ``nack(requeue=True)`` return to the queue and may be
    delivered after later messages of their key; tidings' consumer retries handlers
    in-process rather than requeueing, so this only happens when a consumer dies.

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
``delivery_limit``, ``connect_timeout``, ``confirm_timeout``, ``ca``, ``cert``, ``key``.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic
from pamqp.common import FieldTable

from tidings.contracts.cloudevents import CloudEvent, encode_binary
from tidings.errors import ConfigurationError
from tidings.tls import TlsSettings, tls_failure
from tidings.transports.base import (
    NOTHING_UNROUTABLE,
    Delivery,
    PublishNotConfirmedError,
    Transport,
    TransportError,
    Unroutable,
)

#: Header prefix of the CloudEvents AMQP binding (binary mode).
HEADER_PREFIX = "cloudEvents:"
DEFAULT_EXCHANGE = "tidings.integration"
QUEUE_PREFIX = "tidings."

# Errors the broker client raises when the broker is unreachable, the connection or
# channel dies, or an operation times out: all become TransportError (retryable).
_BROKER_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
)
_CLOSE_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class RabbitMQOptions:
    """The tidings-specific settings read from the URL query string."""

    exchange: str = DEFAULT_EXCHANGE
    prefetch: int = 256
    single_active_consumer: bool = False
    delivery_limit: int | None = None
    connect_timeout: float = 5.0
    confirm_timeout: float = 30.0
    tls: TlsSettings | None = None  # set for amqps://


class RabbitMQTransport(Transport):
    """Integration events over RabbitMQ: ``amqp://user:password@host:port/vhost?options``."""

    schemes = ("amqp", "amqps")

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._client_url, self.options = _parse_url(url)
        self._where = _describe(url)
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
                await _close_quietly(connection)

    async def publish_batch(self, source: str, events: Sequence[CloudEvent]) -> Unroutable:
        """Publish ``events`` in order with pipelined publisher confirms (mandatory)."""
        if not events:
            return NOTHING_UNROUTABLE
        # Build every message first: an invalid type fails before anything is sent.
        messages = [(*_encode(source, event), _routing_key(event.type)) for event in events]
        async with self._publish_lock:
            channel = await self._publisher()
            exchange = self.options.exchange
            # Tasks start in creation order and aiormq writes frames under a FIFO lock,
            # so the broker receives the batch in order while confirms are outstanding.
            # Confirms are awaited; waiting for each frame to be written would add nothing.
            publishes = [
                asyncio.ensure_future(
                    channel.basic_publish(
                        body,
                        exchange=exchange,
                        routing_key=key,
                        properties=properties,
                        mandatory=True,
                        wait=False,
                    )
                )
                for body, properties, key in messages
            ]
            try:
                async with asyncio.timeout(self.options.confirm_timeout):
                    results = await asyncio.gather(*publishes, return_exceptions=True)
            except TimeoutError:
                await self._drop_publisher()
                raise PublishNotConfirmedError(
                    f"RabbitMQ at {self._where} did not confirm a batch of {len(events)} "
                    f"events within {self.options.confirm_timeout:g} s; retry the batch "
                    "(raise ?confirm_timeout= if the broker is just slow)"
                ) from None
            # aiormq resolves a returned message's confirmation with the message itself.
            unroutable = frozenset(
                index
                for index, result in enumerate(results)
                if isinstance(result, DeliveredMessage)
            )
            failures = [
                result for result in results if not isinstance(result, Basic.Ack | DeliveredMessage)
            ]
            if failures:
                await self._drop_publisher()
                raise PublishNotConfirmedError(
                    f"RabbitMQ at {self._where} did not confirm {len(failures)} of "
                    f"{len(events)} events (first: {failures[0]!r}); retry the whole batch"
                ) from (failures[0] if isinstance(failures[0], BaseException) else None)
            return unroutable

    async def declare_subscription(self, group: str, event_types: Collection[str]) -> None:
        """Declare the group's quorum queue ``tidings.<group>`` bound to each event type."""
        queue_name = _queue_name(group)
        keys = sorted({_routing_key(event_type) for event_type in event_types})
        arguments: dict[str, Any] = {"x-queue-type": "quorum"}
        if self.options.single_active_consumer:
            arguments["x-single-active-consumer"] = True
        if self.options.delivery_limit is not None:
            arguments["x-delivery-limit"] = self.options.delivery_limit
        connection = await self._connect()
        # A scratch channel: a failed declaration closes its channel, and that must not
        # be the publishing channel.
        try:
            async with asyncio.timeout(self.options.confirm_timeout):
                channel = await connection.channel(publisher_confirms=False)
                try:
                    exchange = await self._declare_exchange(channel)
                    queue = await channel.declare_queue(
                        queue_name, durable=True, arguments=arguments
                    )
                    for key in keys:
                        await queue.bind(exchange, routing_key=key)
                finally:
                    await _close_quietly(channel)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            raise ConfigurationError(
                f"RabbitMQ refused to declare queue {queue_name!r} or exchange "
                f"{self.options.exchange!r} ({exc}); one already exists with other "
                "settings (e.g. single_active_consumer, delivery_limit, queue type): delete "
                "it or use matching URL options"
            ) from exc
        except _BROKER_ERRORS as exc:
            raise TransportError(
                f"cannot declare the subscription of {group!r} on RabbitMQ at "
                f"{self._where}: {exc!r}; retry when the broker is reachable"
            ) from exc

    async def delete_subscription(self, group: str) -> None:
        """Delete the group's queue ``tidings.<group>`` and the messages it holds."""
        connection = await self._connect()
        try:
            async with asyncio.timeout(self.options.confirm_timeout):
                channel = await connection.channel(publisher_confirms=False)
                try:
                    await channel.queue_delete(_queue_name(group))
                finally:
                    await _close_quietly(channel)
        except _BROKER_ERRORS as exc:
            raise TransportError(
                f"cannot delete the subscription of {group!r} on RabbitMQ at "
                f"{self._where}: {exc!r}; retry when the broker is reachable"
            ) from exc

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
        """Every message received while the previous batch was handled, as one batch.

        Consumes through aio-pika's underlying aiormq channel: the deliveries go
        straight to the consumer, without building an aio-pika message object for each.
        """
        await self.declare_subscription(group, event_types)
        connection = await self._connect()
        arrivals: asyncio.Queue[DeliveredMessage | None] = asyncio.Queue()

        async def on_message(message: DeliveredMessage) -> None:
            arrivals.put_nowait(message)

        def on_close(_sender: object, _exc: BaseException | None) -> None:
            arrivals.put_nowait(None)  # wakes the generator so it can report the loss

        # Unacknowledged messages of this channel by delivery tag, in arrival (= tag)
        # order: ack_many can then acknowledge a leading run with one frame.
        unacked: dict[int, DeliveredMessage] = {}
        channel = connection.channel(publisher_confirms=False)
        try:
            async with asyncio.timeout(self.options.connect_timeout):
                await channel
                channel.close_callbacks.add(on_close)
                underlay = await channel.get_underlay_channel()
                await underlay.basic_qos(prefetch_count=self.options.prefetch)
                await underlay.basic_consume(_queue_name(group), on_message, no_ack=False)
        except _BROKER_ERRORS as exc:
            await _close_quietly(channel)
            raise TransportError(
                f"cannot start consuming {_queue_name(group)!r} on RabbitMQ at "
                f"{self._where}: {exc!r}; subscribe again when the broker is reachable"
            ) from exc
        try:
            while True:
                message = await arrivals.get()
                batch: list[Delivery] = []
                while message is not None:
                    unacked[_tag(message)] = message
                    batch.append(self._delivery(message, unacked))
                    if len(batch) == max_batch or arrivals.empty():
                        break
                    message = arrivals.get_nowait()
                if batch:
                    yield batch
                if message is None:
                    raise TransportError(
                        f"lost the RabbitMQ channel consuming {_queue_name(group)!r} at "
                        f"{self._where}; subscribe again (unacknowledged messages are "
                        "redelivered)"
                    )
        finally:
            # Closing the channel hands every unacknowledged message back to the queue.
            channel.close_callbacks.discard(on_close)
            await _close_quietly(channel)

    def _delivery(
        self, message: DeliveredMessage, unacked: dict[int, DeliveredMessage]
    ) -> Delivery:
        properties = message.header.properties
        headers: dict[str, Any] = dict(properties.headers or {})
        if properties.content_type:
            headers["content-type"] = properties.content_type
        return Delivery(
            body=message.body,
            headers=headers,
            redelivered=bool(getattr(message.delivery, "redelivered", False)),
            # Only tidings' exchange routes by type: a message put straight into the
            # queue (default exchange) carries the queue's name as routing key.
            routed_type=(
                getattr(message.delivery, "routing_key", None)
                if getattr(message.delivery, "exchange", None) == self.options.exchange
                else None
            ),
            _transport_token=_Received(message, unacked),
            _transport=self,
        )

    async def ack(self, delivery: Delivery) -> None:
        """Acknowledge on the channel the message arrived on."""
        await self._acknowledge(delivery._transport_token, multiple=False)

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """One ``multiple`` ack for the leading run of the channel's unacknowledged
        messages that are all in ``deliveries``; single acks for the rest."""
        received: list[_Received] = [delivery._transport_token for delivery in deliveries]
        if not received:
            return
        unacked = received[0].unacked
        wanted = {_tag(item.message) for item in received if item.unacked is unacked}
        run: list[int] = []
        for tag in unacked:
            if tag not in wanted:
                break
            run.append(tag)
        settled: set[int] = set()
        if len(run) > 1:
            last = _Received(unacked[run[-1]], unacked)
            for tag in run[:-1]:
                del unacked[tag]
            await self._acknowledge(last, multiple=True)
            settled.update(run)
        for item in received:
            if item.unacked is not unacked or _tag(item.message) not in settled:
                await self._acknowledge(item, multiple=False)

    async def nack(self, delivery: Delivery, *, requeue: bool = True) -> None:
        """Return the message to the queue, or drop it when ``requeue`` is False."""
        received: _Received = delivery._transport_token
        received.unacked.pop(_tag(received.message), None)
        try:
            await received.message.channel.basic_nack(_tag(received.message), requeue=requeue)
        except _BROKER_ERRORS as exc:
            raise TransportError(
                f"could not reject message {_message_id(received.message)!r}: {exc!r}; "
                "the broker will deliver it again when the channel closes"
            ) from exc

    async def _acknowledge(self, received: _Received, *, multiple: bool) -> None:
        received.unacked.pop(_tag(received.message), None)
        try:
            await received.message.channel.basic_ack(_tag(received.message), multiple=multiple)
        except _BROKER_ERRORS as exc:
            raise TransportError(
                f"could not acknowledge message {_message_id(received.message)!r}: {exc!r}; "
                "the broker will deliver it again, which the inbox makes harmless"
            ) from exc

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
            except _BROKER_ERRORS as exc:
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
                await self._declare_exchange(channel)
                publishing = cast(aiormq.Channel, await channel.get_underlay_channel())
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            raise ConfigurationError(
                f"exchange {self.options.exchange!r} exists on RabbitMQ at {self._where} "
                f"with other settings ({exc}); tidings needs a durable topic exchange: "
                "delete it or choose another name with ?exchange="
            ) from exc
        except _BROKER_ERRORS as exc:
            raise TransportError(
                f"cannot open a publishing channel on RabbitMQ at {self._where}: {exc!r}; "
                "retry when the broker is reachable"
            ) from exc
        self._channel, self._publishing = channel, publishing
        return publishing

    async def _declare_exchange(self, channel: AbstractChannel) -> AbstractExchange:
        return await channel.declare_exchange(
            self.options.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )

    async def _drop_publisher(self) -> None:
        """Forget the publishing channel after a failure, so the next batch starts clean."""
        channel, self._channel, self._publishing = self._channel, None, None
        if channel is not None and not await _close_quietly(channel):
            # The broker did not answer a channel close: treat the connection as dead.
            connection, self._connection = self._connection, None
            if connection is not None:
                await _close_quietly(connection)


def _encode(source: str, event: CloudEvent) -> tuple[bytes, Basic.Properties]:
    """The AMQP body and properties of ``event`` (CloudEvents binary mode)."""
    headers, body = encode_binary(event, prefix=HEADER_PREFIX)
    content_type = headers.pop("content-type")
    properties = Basic.Properties(
        content_type=content_type,
        headers=cast(FieldTable, headers),
        delivery_mode=2,  # persistent
        message_id=event.id,
        message_type=event.type,
        app_id=source,
    )
    return body, properties


@dataclass(slots=True)
class _Received:
    message: DeliveredMessage
    unacked: dict[int, DeliveredMessage]


def _tag(message: DeliveredMessage) -> int:
    return int(getattr(message.delivery, "delivery_tag", 0) or 0)


def _message_id(message: DeliveredMessage) -> str | None:
    return message.header.properties.message_id


@functools.lru_cache(maxsize=1024)
def _routing_key(event_type: str) -> str:
    """The event type as routing key; wildcards would turn bindings into patterns."""
    if (
        not event_type
        or len(event_type.encode()) > 255
        or any(char in event_type for char in "*#")
        or any(char.isspace() for char in event_type)
    ):
        raise ConfigurationError(
            f"event type {event_type!r} cannot be a RabbitMQ routing key: use 1-255 bytes "
            "without spaces, '*' or '#' (e.g. 'catalog.product.updated')"
        )
    return event_type


def _queue_name(group: str) -> str:
    name = QUEUE_PREFIX + group
    if not group or len(name.encode()) > 255 or any(char.isspace() for char in group):
        raise ConfigurationError(
            f"group {group!r} cannot name a RabbitMQ queue: use a non-empty name without "
            "spaces, at most 247 bytes (it becomes 'tidings.<group>')"
        )
    return name


async def _close_quietly(closable: AbstractChannel | AbstractConnection) -> bool:
    """Close with a bounded wait; False if the broker did not answer in time."""
    if closable.is_closed:
        return True
    try:
        async with asyncio.timeout(_CLOSE_TIMEOUT):
            await closable.close()
    except TimeoutError:
        return False
    except _BROKER_ERRORS:
        return True  # already closed underneath us: nothing left to release
    return True


def _parse_url(url: str) -> tuple[str, RabbitMQOptions]:
    """Split tidings' options off the URL; the rest goes to aio-pika untouched."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    tls, query = TlsSettings.split(parse_qsl(parts.query, keep_blank_values=True))
    if tls.given and parts.scheme != "amqps":
        raise ConfigurationError(
            f"?ca=/?cert= in {_describe(url)!r} need TLS: write amqps:// (port 5671 by default)"
        )
    for name, value in query:
        if name in RabbitMQOptions.__dataclass_fields__:
            ours[name] = value
        else:
            theirs.append((name, value))
    defaults = RabbitMQOptions()
    try:
        options = RabbitMQOptions(
            exchange=ours.get("exchange", defaults.exchange),
            prefetch=int(ours.get("prefetch", defaults.prefetch)),
            single_active_consumer=_flag(
                ours.get("single_active_consumer", "false"), "single_active_consumer"
            ),
            delivery_limit=(int(ours["delivery_limit"]) if ours.get("delivery_limit") else None),
            connect_timeout=float(ours.get("connect_timeout", defaults.connect_timeout)),
            confirm_timeout=float(ours.get("confirm_timeout", defaults.confirm_timeout)),
            tls=tls if parts.scheme == "amqps" else None,
        )
    except ValueError as exc:
        raise ConfigurationError(
            f"invalid RabbitMQ URL option in {_describe(url)!r}: {exc}"
        ) from exc
    if not options.exchange:
        raise ConfigurationError("?exchange= must name an exchange")
    if options.prefetch < 1:
        raise ConfigurationError("?prefetch= must be at least 1")
    if options.connect_timeout <= 0 or options.confirm_timeout <= 0:
        raise ConfigurationError("?connect_timeout= and ?confirm_timeout= must be positive")
    return urlunsplit(parts._replace(query=urlencode(theirs))), options


def _flag(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"?{name}= must be true or false, got {value!r}")


def _describe(url: str) -> str:
    """host:port/vhost for messages: never the password."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.hostname or 'localhost'}{port}{parts.path or '/'}"
