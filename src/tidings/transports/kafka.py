"""Kafka transport (aiokafka).

This module publishes and consumes; URL options are in
:mod:`~tidings.transports.kafka_options`, creating the topic and a new group's starting
offsets in :mod:`~tidings.transports.kafka_topology`, a subscription's offsets and
commits in :mod:`~tidings.transports.kafka_offsets`.

Layout
    One topic, each event keyed by its partition key (``CloudEvent.subject``); Kafka's
    default partitioner (murmur2 of the key) puts all events of a key in one
    partition. Messages use the CloudEvents Kafka binding in binary mode: attributes
    in ``ce_``-prefixed headers (UTF-8 bytes), ``content-type`` header, the JSON
    payload as the value. Each consuming context is a consumer group named after it.

Confirmation
    The producer runs with ``acks=all``: a message is confirmed once every in-sync
    replica has it. ``publish_batch`` builds one record batch per partition (placing
    keys as Kafka's default murmur2 partitioner does, so other producers of the topic
    agree on where a key lives), hands them to the producer whole, then waits for all
    their confirmations; any failure fails the batch, which the relay retries whole.
    With the idempotent producer the broker discards the duplicates its own retries
    would create.

Ordering
    Kafka orders a partition, so events of one key arrive in publication order, for
    any number of consumers per group (a partition has one owner in the group).
    aiokafka keeps at most one request in flight per broker, so a retried send never
    overtakes a later one, with or without idempotence. Order per key breaks if the
    partition count of the topic changes (keys move to other partitions), and around
    a rebalance, where a partition's unacknowledged events go to its new owner while
    the old one may still be handling them.

Subscriptions
    A group declared after events were published still gets everything the topic
    retains, even before its first consumer joins
    (:mod:`~tidings.transports.kafka_topology`). The topic is a shared log: a record
    whose ``ce_type`` header names a type the group does not read is passed over without
    decoding (counted in ``Transport.skipped``); that header is the delivery's
    ``routed_type``. Consumers commit manually: the offset after a message is committed
    only once it and every earlier message of its partition are acknowledged (events of
    unsubscribed types count as acknowledged). Commits are sent after each fetched batch
    is handed out and when a subscription closes, so a consumer killed outright
    redelivers at most the acknowledged part of one batch. ``nack(requeue=True)`` seeks
    the partition back to that message: it and every later message of the partition come
    again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import uuid
from collections.abc import AsyncGenerator, Collection, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from tidings.contracts.cloud_event import CloudEvent
from tidings.contracts.cloudevents import encode_binary
from tidings.tls import tls_failure
from tidings.transports.base import (
    NOTHING_UNROUTABLE,
    Delivery,
    PublishNotConfirmedError,
    Transport,
    TransportError,
    Unroutable,
)
from tidings.transports.kafka_offsets import PartitionProgress, Subscription, Token, token_of
from tidings.transports.kafka_options import KafkaOptions
from tidings.transports.kafka_topology import declare_group, ensure_topic

if TYPE_CHECKING:
    from aiokafka.producer.message_accumulator import BatchBuilder

logger = logging.getLogger(__name__)

HEADER_PREFIX = "ce_"


class KafkaTransport(Transport):
    """Integration events on one keyed Kafka topic, one consumer group per context."""

    schemes = ("kafka", "kafkas")
    routes_by_type = False

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.options = KafkaOptions.from_url(url)
        tls = self.options.tls
        self._ssl_context = tls.context() if tls is not None else None
        # Passed to every aiokafka client this transport starts.
        self._security: dict[str, Any] = (
            {"security_protocol": "SSL", "ssl_context": self._ssl_context}
            if self._ssl_context is not None
            else {}
        )
        self._producer: AIOKafkaProducer | None = None
        #: Whether the running producer is idempotent (False after an ``auto`` fallback).
        self.idempotent = False

    @property
    def producer(self) -> AIOKafkaProducer:
        """The started aiokafka producer; raises if :meth:`connect` was not called."""
        if self._producer is None:
            raise TransportError(
                "the Kafka transport is not connected; use 'async with open_transport(url)'"
            )
        return self._producer

    async def connect(self) -> None:
        await self._check_tls()
        await ensure_topic(self.options, self._security)
        if self.options.idempotence != "false":
            try:
                self._producer = await self._start_producer(idempotent=True)
                self.idempotent = True
                return
            except KafkaError as exc:
                if self.options.idempotence == "true":
                    raise TransportError(
                        f"the Kafka broker at {self.options.bootstrap_servers} refused the "
                        f"idempotent producer ({exc!r}); use a broker that supports it, "
                        "or set idempotence=auto or false in the URL"
                    ) from exc
                logger.warning(
                    "Kafka broker %s refused an idempotent producer id (%r); publishing "
                    "with acks=all without idempotence: retries may duplicate events, "
                    "which the consumers' inbox absorbs",
                    self.options.bootstrap_servers,
                    exc,
                )
        self._producer = await self._start_producer(idempotent=False)
        self.idempotent = False

    async def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()  # flushes and waits for outstanding confirmations

    async def publish_batch(self, source: str, events: Sequence[CloudEvent]) -> Unroutable:
        """Append ``events`` to the topic; it keeps them for every group, declared or not."""
        if not events:
            return NOTHING_UNROUTABLE
        producer = self.producer
        topic = self.options.topic
        try:
            async with asyncio.timeout(self.options.request_timeout_ms / 1000 * 2):
                partitions = sorted(await producer.partitions_for(topic))
                # One record batch per partition, in event order, handed to the producer
                # whole: per event this costs half of what send() does (a future, a
                # metadata check and a partitioner call each).
                batches: dict[int, BatchBuilder] = {}
                confirmations = []
                for event in events:
                    headers, body = encode_binary(event, prefix=HEADER_PREFIX)
                    key = event.subject.encode() if event.subject is not None else None
                    partition = _partition_for(key, partitions)
                    header_list = [(name, value.encode()) for name, value in headers.items()]
                    batch = batches.get(partition)
                    # An empty batch takes any record, so this loops at most twice.
                    while batch is None or (
                        batch.append(key=key, value=body, timestamp=None, headers=header_list)
                        is None
                    ):
                        if batch is not None:  # full: send it, start the next one
                            confirmations.append(
                                await producer.send_batch(batch, topic, partition=partition)
                            )
                        batch = batches[partition] = producer.create_batch()
                for partition, batch in batches.items():
                    confirmations.append(
                        await producer.send_batch(batch, topic, partition=partition)
                    )
                results = await asyncio.gather(*confirmations, return_exceptions=True)
        except (KafkaError, TimeoutError) as exc:
            raise PublishNotConfirmedError(
                f"Kafka did not take a batch of {len(events)} events ({exc!r}); nothing is "
                "lost: retry the whole batch once the broker is reachable"
            ) from exc
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures:
            raise PublishNotConfirmedError(
                f"Kafka did not confirm {len(failures)} of the {len(results)} record batches "
                f"holding {len(events)} events (first error: {failures[0]!r}); retry the "
                "whole batch"
            )
        return NOTHING_UNROUTABLE

    async def declare_subscription(self, group: str, event_types: Collection[str]) -> None:
        """Start the group at the beginning of what the topic retains if it has no
        offsets yet (see :mod:`~tidings.transports.kafka_topology`)."""
        await declare_group(self.options, self._security, group)

    async def delete_subscription(self, group: str) -> None:
        """Nothing to delete: a Kafka group holds no messages, only offsets, which the
        broker expires (``offsets.retention.minutes``) once the group has no members.
        aiokafka's admin client cannot delete groups."""

    async def subscribe(
        self, group: str, event_types: Collection[str]
    ) -> AsyncGenerator[Delivery, None]:
        wanted = frozenset(event_types)
        await self.declare_subscription(group, wanted)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.options.bootstrap_servers,
            group_id=group,
            client_id=f"{self.options.client_id}-{uuid.uuid4().hex[:8]}",
            enable_auto_commit=False,
            # Only reached when the group's offsets are gone (retention): replaying
            # is the safe side, the inbox drops what was already handled.
            auto_offset_reset="earliest",
            request_timeout_ms=self.options.request_timeout_ms,
            **self._security,
            session_timeout_ms=self.options.session_timeout_ms,
            heartbeat_interval_ms=self.options.heartbeat_interval_ms,
        )
        subscription = Subscription(consumer)
        consumer.subscribe([self.options.topic], listener=subscription)
        try:
            await consumer.start()
        except KafkaError as exc:
            raise TransportError(
                f"cannot join Kafka consumer group {group!r}: {exc!r}; retry later"
            ) from exc
        try:
            while True:
                await subscription.commit()
                try:
                    batch = await consumer.getmany(
                        timeout_ms=1000, max_records=self.options.fetch_count
                    )
                except KafkaError as exc:
                    raise TransportError(
                        f"Kafka consumer of group {group!r} failed: {exc!r}; the consumer "
                        "should reconnect, unacknowledged events will be redelivered"
                    ) from exc
                for progress in subscription.progress.values():
                    progress.skip_from = None
                for tp, records in batch.items():
                    for record in records:
                        progress = subscription.progress.setdefault(tp, PartitionProgress())
                        if progress.skip_from is not None and record.offset >= progress.skip_from:
                            break
                        if tp not in consumer.assignment():
                            break  # revoked while the handler ran
                        headers = {name: value for name, value in record.headers}
                        again = progress.delivered(record.offset)
                        routed = headers.get(f"{HEADER_PREFIX}type", b"").decode(errors="replace")
                        if routed not in wanted:
                            progress.acked(record.offset)
                            self.skipped += 1
                            continue
                        yield Delivery(
                            body=record.value or b"",
                            headers=headers,
                            redelivered=again,
                            routed_type=routed,
                            _transport_token=Token(subscription, tp, record.offset),
                            _transport=self,
                        )
        finally:
            await subscription.commit()
            await consumer.stop()

    async def ack(self, delivery: Delivery) -> None:
        token = token_of(delivery)
        progress = token.subscription.progress.get(token.partition)
        if progress is not None:
            progress.acked(token.offset)

    async def nack(self, delivery: Delivery, *, requeue: bool = True) -> None:
        if not requeue:
            await self.ack(delivery)
            return
        token = token_of(delivery)
        progress = token.subscription.progress.get(token.partition)
        if progress is None or token.offset not in progress.outstanding:
            return  # already coming again (an earlier nack or a revocation)
        progress.rewind(token.offset)
        try:
            token.subscription.consumer.seek(token.partition, token.offset)
        except (KafkaError, AssertionError, ValueError) as exc:
            # Not ours any more: its new owner starts at or before this offset.
            logger.debug("seek after nack skipped: %r", exc)

    async def _start_producer(self, *, idempotent: bool) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.options.bootstrap_servers,
            client_id=self.options.client_id,
            acks="all",
            enable_idempotence=idempotent,
            request_timeout_ms=self.options.request_timeout_ms,
            **self._security,
            max_batch_size=256 * 1024,
            linger_ms=0,
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            if idempotent and not _unreachable(exc):
                raise
            raise TransportError(
                f"cannot reach Kafka at {self.options.bootstrap_servers}: {exc!r}; check "
                "that the broker runs and that the URL's host and port are right"
            ) from exc
        return producer

    async def _check_tls(self) -> None:
        """One TLS handshake with the first bootstrap server: aiokafka logs a refused
        certificate and reports only that it could not bootstrap, so the reason is
        found here and raised as a :class:`TlsError`."""
        if self._ssl_context is None:
            return
        first = self.options.bootstrap_servers.split(",")[0].strip()
        address = urlsplit(f"//{first}")
        host, port = address.hostname or "localhost", address.port or 9092  # as aiokafka
        try:
            async with asyncio.timeout(min(10.0, self.options.request_timeout_ms / 1000)):
                _, writer = await asyncio.open_connection(host, port, ssl=self._ssl_context)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        except (OSError, TimeoutError) as exc:
            refused = tls_failure(exc, first)
            if refused is not None:
                raise refused from exc
            raise TransportError(
                f"cannot reach Kafka at {first}: {exc!r}; check that the broker runs and "
                "that the URL's host and port are right"
            ) from exc


def _unreachable(exc: KafkaError) -> bool:
    return "connect" in type(exc).__name__.lower() or "bootstrap" in str(exc).lower()


def _partition_for(key: bytes | None, partitions: Sequence[int]) -> int:
    """The partition Kafka's default partitioner picks: murmur2 of the key modulo the
    partition count, as the Java client and aiokafka's ``send`` do, so that a key's
    events share a partition whichever client produced them."""
    if key is None:
        return random.choice(partitions)
    return partitions[_key_hash(key) % len(partitions)]


@functools.lru_cache(maxsize=16_384)
def _key_hash(key: bytes) -> int:
    # Aggregates publish runs of events; murmur2 in pure Python costs more than the
    # rest of preparing a record, so each key is hashed once while it stays busy.
    return int(murmur2(key)) & 0x7FFFFFFF
