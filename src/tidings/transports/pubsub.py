"""Google Cloud Pub/Sub transport (google-cloud-pubsub): one topic, a subscription per group.

URL: ``pubsub://PROJECT?options``, e.g. ``pubsub://my-project?topic=tidings`` or, against
Google's emulator, ``pubsub://any-project?emulator=127.0.0.1:8085`` (or set
``PUBSUB_EMULATOR_HOST=127.0.0.1:8085``, which the client library reads itself). Without
an emulator the client authenticates with Application Default Credentials.

Topology
    Every context publishes to one topic (``tidings``, ``?topic=``) that tidings creates
    when it is missing, for the reason the NATS transport uses one stream: a consuming
    context declares its subscription before any producer ran and without knowing who
    produces a type. Each consuming context (``group``) owns one subscription named
    ``<topic>.<group>`` with **message ordering enabled**, created by
    :meth:`~PubSubTransport.declare_subscription`: every group receives every event
    (fan-out), and the processes of one group share its messages.

Type filtering
    The subscription carries a Pub/Sub filter on its event types
    (``attributes."ce-type" = "a" OR ...``) when that fits Pub/Sub's 256-byte limit, so
    Google does not deliver other types at all. The emulator stores filters but does
    not apply them, so the transport applies the subscription's filter itself as well:
    a delivery the filter excludes is acknowledged and never handed out. Everything
    the filter admits is handed to the consumer, including a type the group no longer
    handles (a filter cannot change once created), exactly like a stale binding on
    RabbitMQ. A group that needs a type its subscription's filter excludes is refused
    with :class:`~tidings.errors.ConfigurationError`: delete the subscription
    (:meth:`~PubSubTransport.delete_subscription`, which drops its backlog) and declare
    it again. Without a filter (too many types for 256 bytes) the transport filters on
    the types of the subscription being consumed. Deliveries carry the ``ce-type``
    attribute the filter matched as :attr:`Delivery.routed_type`, and the transport
    routes by type (``routes_by_type``): the consumer dead-letters a type it does not
    handle, or a message whose CloudEvent says another type.

Unroutable events
    Pub/Sub drops a message that no subscription's filter admits. Before publishing a
    type it has not seen taken, the transport lists the topic's subscriptions and
    parses their filters (its own format: ``attributes."ce-type" = "a" OR ...``; no
    filter takes every type, a filter in another format none); types seen taken are
    remembered, others looked up again on their next publish, and everything is
    forgotten when the topic is checked again (connecting after :meth:`close`, or a
    publish that found the topic gone), so a subscription deleted while a relay runs
    is noticed only then. Events of a type nobody takes are not sent but reported
    unroutable, so the relay holds them.
    Pub/Sub does not deduplicate by event id, so not sending them is no matter of
    correctness (unlike NATS' ``Nats-Msg-Id``): it spares a copy delivered to a
    subscription declared between the look-up and a later re-send.

Messages
    CloudEvents binary mode following the CloudEvents Google Cloud Pub/Sub binding:
    every attribute as a ``ce-<attribute>`` message attribute, ``datacontenttype`` as
    ``content-type``, the JSON payload as the message data. The partition key
    (``CloudEvent.subject``) is the **ordering key**: Pub/Sub delivers the messages of
    one key in publication order; events without a key have no ordering key.

Publishing
    :meth:`~PubSubTransport.publish_batch` hands every event to the client's batching
    publisher, then waits for all their futures together (one wake-up of the event loop
    for the whole batch, not one per message) before returning, so the relay marks
    rows only once Pub/Sub stored them. Each publish is **one bounded attempt**
    (``?confirm_timeout=``, 30 s): with ordering enabled the client would otherwise
    retry a failed publish forever. A failure pauses the ordering key in the client
    (later publishes of the key fail with ``PublishToPausedOrderingKeyException``
    rather than overtake it); tidings resumes every key of the failed batch and raises
    :class:`PublishNotConfirmedError`, and the relay publishes the whole batch again,
    in order. Nothing is dropped, skipped or reordered; some events may be stored
    twice, which the consumer's inbox absorbs.

Consuming
    Streaming pull with flow control: at most ``?prefetch=`` (1000) messages and
    ``?max_bytes=`` (100 MiB) outstanding per subscriber. The client keeps extending
    the ack deadline of messages handed out but not settled, ``?ack_deadline=``
    (10 s, Pub/Sub's default, also set on the subscription) at a time, for up to
    ``?max_lease=`` (3600 s), so a consumer retrying a handler in-process keeps its
    messages; those of a consumer that died, or that were in flight on a stream that
    broke, come back to the group after ``ack_deadline``. Messages go straight from the
    client's stream thread to the event loop, without a thread pool. With ordering the
    client hands out the next message of a key only after the previous one is
    acknowledged or nacked, so one subscriber sees each key in order; several
    subscribers of one group also keep per-key order (Pub/Sub sends a key to one
    stream at a time). ``ack`` acknowledges; ``nack(requeue=True)`` makes the message
    (and the later ones of its key) come again at once; ``nack(requeue=False)``
    acknowledges it, since tidings' own dead letters are the record of what was not
    handled. Pub/Sub does not say whether a message was delivered before:
    :attr:`Delivery.redelivered` is always False. The client re-opens a broken stream
    by itself; a subscription that fails for good (deleted, permission denied) makes
    :meth:`~PubSubTransport.subscribe` raise :class:`TransportError`. A subscriber that
    stops gives back what it held, then half-closes its stream and waits (up to
    ``?connect_timeout=``) for the server to end it before the client cancels it:
    Google's emulator never forgets a cancelled stream and keeps assigning it ordering
    keys (:func:`~tidings.transports.pubsub_stream.half_close`).

This module publishes and consumes; URL options are in
:mod:`~tidings.transports.pubsub_options`, creating the topic and the subscriptions in
:mod:`~tidings.transports.pubsub_topology`, reading back which types they take in
:mod:`~tidings.transports.pubsub_routing`, the bridge to the client's threads in
:mod:`~tidings.transports.pubsub_stream`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any

import grpc
from google.api_core import exceptions as google_errors
from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.publisher.exceptions import PublishToPausedOrderingKeyException
from google.pubsub_v1.services.publisher.transports.grpc import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber.transports.grpc import SubscriberGrpcTransport

from tidings.contracts.cloud_event import CloudEvent
from tidings.contracts.cloudevents import encode_binary
from tidings.transports.base import (
    NOTHING_UNROUTABLE,
    Delivery,
    PublishNotConfirmedError,
    Transport,
    TransportError,
    Unroutable,
)
from tidings.transports.pubsub_options import parse_url
from tidings.transports.pubsub_stream import (
    BROKER_ERRORS,
    DeliveryToken,
    StreamingPull,
    all_done,
    half_close,
    unused_callback,
)
from tidings.transports.pubsub_topology import Topology

#: Attribute prefix of the CloudEvents Pub/Sub binding (binary mode).
ATTRIBUTE_PREFIX = "ce-"
# RuntimeError: the client was stopped while the batch was handed to it.
_PUBLISH_ERRORS: tuple[type[BaseException], ...] = (*BROKER_ERRORS, RuntimeError)


class PubSubTransport(Transport):
    """Integration events over Google Cloud Pub/Sub: ``pubsub://PROJECT?options``."""

    schemes = ("pubsub",)
    #: Each group's subscription is filtered on its types (applied by the transport
    #: too, since the emulator ignores filters): a delivery of another type is misrouted.
    routes_by_type = True

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.project, self.options = parse_url(url)
        self._emulator = self.options.emulator or os.environ.get("PUBSUB_EMULATOR_HOST", "")
        self._where = f"emulator {self._emulator}" if self._emulator else "Google Cloud"
        self._publisher: pubsub_v1.PublisherClient | None = None
        self._subscriber: pubsub_v1.SubscriberClient | None = None
        self._topology = Topology(
            self.project,
            self.options,
            self._where,
            self._publisher_client,
            self._subscriber_client,
        )
        self.topic_path = self._topology.topic_path
        # One batch at a time: a retried batch must not interleave with the next one.
        self._publish_lock = asyncio.Lock()

    async def connect(self) -> None:
        """Create the clients and the topic if missing; :class:`TransportError` if unreachable."""
        await self._topology.ensure_topic()

    async def close(self) -> None:
        """Stop the clients after the batch being published (if any) is confirmed."""
        async with self._publish_lock:
            publisher, self._publisher = self._publisher, None
            subscriber, self._subscriber = self._subscriber, None
            self._topology.forget_topic()
            if publisher is not None:
                with contextlib.suppress(*BROKER_ERRORS, RuntimeError):
                    await asyncio.to_thread(publisher.stop)
            if subscriber is not None:
                with contextlib.suppress(*BROKER_ERRORS, RuntimeError):
                    subscriber.close()

    async def publish_batch(self, source: str, events: Sequence[CloudEvent]) -> Unroutable:
        """Publish ``events`` in order, waiting for every message's confirmation together.

        Events of a type no subscription's filter admits are not sent (Pub/Sub would
        drop them) but reported unroutable.
        """
        if not events:
            return NOTHING_UNROUTABLE
        messages = [_encode(event) for event in events]
        async with self._publish_lock:
            await self._topology.ensure_topic()
            untaken = await self._topology.untaken({event.type for event in events})
            publisher = self._publisher_client()
            timeout = self.options.confirm_timeout
            futures: list[Any] = []
            keys: set[str] = set()
            try:
                for event, (key, attributes, body) in zip(events, messages, strict=True):
                    if event.type in untaken:
                        continue
                    keys.add(key)
                    # retry=None: one bounded attempt; ordered publishes would otherwise
                    # retry forever while the broker is unreachable.
                    futures.append(
                        publisher.publish(
                            self.topic_path,
                            body,
                            ordering_key=key,
                            retry=None,
                            timeout=timeout,
                            **attributes,
                        )
                    )
                # The client's own timeout ends each attempt; this bounds the rest.
                async with asyncio.timeout(timeout * 2 + 5):
                    await all_done(futures)
            except TimeoutError:
                self._resume(keys)
                raise PublishNotConfirmedError(
                    f"Pub/Sub ({self._where}) did not confirm a batch of {len(events)} "
                    f"events within {timeout:g} s; retry the whole batch"
                ) from None
            except _PUBLISH_ERRORS as exc:
                self._resume(keys)
                raise PublishNotConfirmedError(
                    f"publishing to Pub/Sub ({self._where}) failed after {len(futures)} of "
                    f"{len(events)} events: {exc!r}; retry the whole batch"
                ) from exc
            failures = [error for f in futures if (error := f.exception()) is not None]
            if failures:
                self._resume(keys)
                first = next(
                    (f for f in failures if not isinstance(f, PublishToPausedOrderingKeyException)),
                    failures[0],
                )
                if isinstance(first, google_errors.NotFound):
                    self._topology.forget_topic()  # deleted, or the emulator restarted
                raise PublishNotConfirmedError(
                    f"Pub/Sub ({self._where}) did not confirm {len(failures)} of "
                    f"{len(events)} events (first: {first!r}); their ordering keys are "
                    "resumed: retry the whole batch"
                ) from first
        if not untaken:
            return NOTHING_UNROUTABLE
        return frozenset(index for index, event in enumerate(events) if event.type in untaken)

    async def declare_subscription(self, group: str, event_types: Collection[str]) -> None:
        """Create the group's ordered subscription, filtered on its types, if missing."""
        await self._topology.declare(group, event_types)

    async def delete_subscription(self, group: str) -> None:
        """Delete the group's subscription and its backlog; idempotent."""
        await self._topology.delete(group)

    async def subscribe(self, group: str, event_types: Collection[str]) -> AsyncIterator[Delivery]:
        """Deliveries for the group by streaming pull; see the module docstring."""
        async with self._stream(group, event_types) as stream:
            while True:
                for delivery in await stream.take(1_000_000):
                    yield delivery

    async def subscribe_batches(
        self, group: str, event_types: Collection[str], max_batch: int
    ) -> AsyncIterator[list[Delivery]]:
        """What the stream delivered meanwhile, up to ``max_batch`` at a time."""
        async with self._stream(group, event_types) as stream:
            while True:
                yield await stream.take(max_batch)

    async def ack(self, delivery: Delivery) -> None:
        """Acknowledge the message (sent by the client's dispatcher, in bulk)."""
        delivery._transport_token.ack()

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge several messages; the client groups them into one request."""
        for delivery in deliveries:
            delivery._transport_token.ack()

    async def nack(self, delivery: Delivery, *, requeue: bool = True) -> None:
        """Redeliver now (``requeue=True``) or acknowledge (dead letters are tidings')."""
        token: DeliveryToken = delivery._transport_token
        if requeue:
            await token.stream.nack([token.message])
        else:
            token.ack()

    @contextlib.asynccontextmanager
    async def _stream(
        self, group: str, event_types: Collection[str]
    ) -> AsyncIterator[StreamingPull]:
        path, admitted = await self._topology.declare(group, event_types)
        subscriber = self._subscriber_client()
        stream = StreamingPull(
            asyncio.get_running_loop(),
            admitted,
            self,
            path,
            subscriber,
            self.options.connect_timeout,
        )
        flow_control = pubsub_v1.types.FlowControl(
            max_messages=self.options.prefetch,
            max_bytes=self.options.max_bytes,
            max_lease_duration=self.options.max_lease,
            # Also the stream's deadline: a message in flight when a stream breaks
            # (or a consumer dies) comes back after this long.
            max_duration_per_lease_extension=self.options.ack_deadline,
        )
        try:
            future = subscriber.subscribe(
                path,
                callback=unused_callback,
                flow_control=flow_control,
                scheduler=stream.scheduler,
            )
        except BROKER_ERRORS as exc:
            raise TransportError(
                f"cannot open a streaming pull on {path!r} at Pub/Sub ({self._where}): "
                f"{exc!r}; subscribe again"
            ) from exc
        future.add_done_callback(stream.scheduler.ended)
        try:
            yield stream
        finally:
            # Nacked while the client still runs, so they come again at once rather
            # than after their ack deadline; the client nacks what it still holds.
            await stream.give_back()
            timeout = self.options.connect_timeout
            if half_close(future):
                # The server ends the stream; cancelling first would leave it
                # registered on Google's emulator (see half_close).
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(future.result, timeout)
            future.cancel()
            with contextlib.suppress(Exception):
                await asyncio.to_thread(future.result, timeout)

    def _resume(self, keys: Collection[str]) -> None:
        publisher = self._publisher
        if publisher is None:
            return
        for key in keys:
            if key:
                with contextlib.suppress(RuntimeError, ValueError):  # not paused: fine
                    publisher.resume_publish(self.topic_path, key)

    def _publisher_client(self) -> pubsub_v1.PublisherClient:
        if self._publisher is None:
            batch = pubsub_v1.types.BatchSettings(
                max_messages=self.options.batch_max_messages,
                max_latency=self.options.batch_max_latency,
            )
            ordering = pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
            kwargs: dict[str, Any] = {}
            if self._emulator:
                channel = grpc.insecure_channel(self._emulator)
                kwargs["transport"] = PublisherGrpcTransport(channel=channel)
            self._publisher = pubsub_v1.PublisherClient(batch, ordering, **kwargs)
        return self._publisher

    def _subscriber_client(self) -> pubsub_v1.SubscriberClient:
        if self._subscriber is None:
            kwargs: dict[str, Any] = {}
            if self._emulator:
                channel = grpc.insecure_channel(self._emulator)
                kwargs["transport"] = SubscriberGrpcTransport(channel=channel)
            self._subscriber = pubsub_v1.SubscriberClient(**kwargs)
        return self._subscriber


def _encode(event: CloudEvent) -> tuple[str, dict[str, str], bytes]:
    attributes, body = encode_binary(event, prefix=ATTRIBUTE_PREFIX)
    return event.subject or "", attributes, body
