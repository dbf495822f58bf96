"""The consumer: runs a context's integration event handlers, effectively once.

For every delivery:

1. Bad input never reaches a handler: oversized, undecodable, unknown, misrouted or
   invalid messages go to the dead-letter store with their reason, and are
   acknowledged. On a shared log (SQLite file, Redis, Kafka) other contexts' types are
   passed over by their routing metadata and counted (``stats.skipped``).
2. Handlers run in the context's own transaction together with the inbox row of the
   event: a redelivered event finds its row and is acknowledged without effects.
3. Deliveries are handled in micro-batches (one transaction, one commit for many
   events) for throughput; if a batch fails, its events are retried one by one so a
   failure belongs to one event only.
4. A failing event is retried at once, then with exponential backoff and jitter, then
   dead-lettered. While it waits, later events of the same partition key wait behind
   it (per-key order); other keys go on.
5. Acknowledgement happens after commit: a crash in between redelivers, and the inbox
   absorbs the duplicate.
6. A lost broker connection is not the events' fault: the consumer backs off,
   reconnects and subscribes again; the broker redelivers what was not acknowledged.
7. On a sharded transport (``shard_count(group) > 1``) the processes of a group lease
   the shards in the context's database and each reads only its own
   (:mod:`tidings.consumer.shard_leases`).

Run it as ``tidings consume APP`` or embedded::

    consumer = Consumer(context)
    task = asyncio.create_task(consumer.run())
    ...
    await consumer.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncConnection

from tidings.application.retry import RetryPolicy
from tidings.consumer.admission import Admission, Rejection, UnknownTypes
from tidings.consumer.database_watch import DatabaseWatch
from tidings.consumer.dead_lettering import DeadLettering
from tidings.consumer.dead_letters import (
    DeadLetter,
    DeadLetterStore,
)
from tidings.consumer.decoding import decode_delivery
from tidings.consumer.handling import HandlerRunner
from tidings.consumer.inbox import purge_statement
from tidings.consumer.items import HandlerFailed, Item
from tidings.consumer.retry_lanes import RetryLanes
from tidings.consumer.shard_leases import DEFAULT_SHARD_LEASE_TTL, ConsumerShards
from tidings.consumer.stats import ConsumerStats
from tidings.consumer.subscriptions import IntegrationSubscriptions
from tidings.contracts.cloudevents import DEFAULT_MAX_BYTES
from tidings.contracts.limits import check_batch_size
from tidings.contracts.registry import ContractRegistry, default_registry
from tidings.contracts.signing import SignatureCheck
from tidings.errors import ConfigurationError
from tidings.observability.metrics import count
from tidings.observability.tracing import ProcessSpans, TraceParenting, messaging_system
from tidings.persistence.migrations import ensure_current
from tidings.transports.base import Delivery, Transport, TransportError, ack_all
from tidings.transports.registry import open_transport

if TYPE_CHECKING:
    from tidings.context import BoundedContext

logger = logging.getLogger("tidings.consumer")

__all__ = ["Consumer", "ConsumerStats", "UnknownTypes"]


class Consumer:
    """Consumes the integration events the context's handlers subscribe to.

    :param group: the subscription name; defaults to the context's name, so every
        process of one context shares the work (competing consumers) while every
        other context gets its own copy (fan-out).
    :param immediate_retries: retries at once before backing off.
    :param retry: backoff between delayed retries, and between reconnection attempts
        while the broker is unreachable.
    :param max_attempts: attempts in all before an event is dead-lettered.
    :param unknown_types: dead-letter (default) or ignore unreadable types/versions.
    :param batch_size: most events handled in one transaction.
    :param trace_parenting: ``"parent"``: each event's process span is a child of the
        create span the event carries (one trace per use case); ``"link"``: it starts
        a trace of its own, linked to it. Only with an OpenTelemetry SDK configured.
    :param batch_size: most events handled in one transaction (1 to 10,000).
    :param signatures: the key ring and verification policy; by default read from the
        environment for the context (:meth:`SignatureCheck.from_environment`).
    :param shard_lease_ttl: on a sharded transport, seconds before the shards of a
        silent process of the group go to the others (heartbeats every third of it).
    """

    def __init__(
        self,
        context: BoundedContext,
        transport: Transport | None = None,
        *,
        group: str | None = None,
        registry: ContractRegistry = default_registry,
        max_message_bytes: int = DEFAULT_MAX_BYTES,
        immediate_retries: int = 2,
        retry: RetryPolicy | None = None,
        max_attempts: int = 6,
        unknown_types: UnknownTypes | str = UnknownTypes.DEAD_LETTER,
        batch_size: int = 200,
        inbox_retention: timedelta = timedelta(days=7),
        trace_parenting: TraceParenting | str = TraceParenting.PARENT,
        signatures: SignatureCheck | None = None,
        shard_lease_ttl: float = DEFAULT_SHARD_LEASE_TTL,
    ) -> None:
        check_batch_size(batch_size)
        self.context = context
        self.transport = transport or open_transport(context.broker_url)
        self.group = group or context.consumer_group
        self.registry = registry
        self.max_message_bytes = max_message_bytes
        self.immediate_retries = immediate_retries
        self.retry = retry or RetryPolicy(initial_delay=0.2, max_delay=30.0)
        self.max_attempts = max(max_attempts, 1)
        self.unknown_types = UnknownTypes(unknown_types)
        self.batch_size = batch_size
        self.inbox_retention = inbox_retention
        self.subscriptions = IntegrationSubscriptions(context.integration_handlers)
        self.dead_letters = DeadLetterStore(context.async_engine)
        skipped_before = self.transport.skipped
        self.stats = ConsumerStats(_skip_counter=lambda: self.transport.skipped - skipped_before)
        self._stopping = asyncio.Event()
        self.shards = ConsumerShards(
            context.async_engine,
            self.group,
            ttl=shard_lease_ttl,
            stopping=self._stopping,
            handled=lambda: self.stats.handled,
        )
        self._admission = Admission(
            self.subscriptions,
            context.upcasters,
            registry,
            max_message_bytes=max_message_bytes,
            unknown_types=self.unknown_types,
            routes_by_type=self.transport.routes_by_type,
            signatures=signatures or SignatureCheck.from_environment(context.name),
        )
        spans = ProcessSpans(messaging_system(self.transport.url), self.group, trace_parenting)
        self._handlers = HandlerRunner(context, self.subscriptions, self.group, spans)
        self._database = DatabaseWatch(context.async_engine, self.group, self.retry, self._stopping)
        self._dead_lettering = DeadLettering(
            context.name,
            self.group,
            self.dead_letters,
            self.transport,
            self._database,
            self._wait_for_database,
            self.stats,
        )
        self._lanes = RetryLanes(
            context_name=context.name,
            group=self.group,
            retry=self.retry,
            immediate_retries=immediate_retries,
            max_attempts=self.max_attempts,
            handle_once=self._handle_once,
            give_up=self._dead_lettering.give_up,
            database=self._database,
            wait_for_database=self._wait_for_database,
            stats=self.stats,
            stopping=self._stopping,
        )
        # While run() runs, batches go back to back on one connection: no pool checkout
        # (and liveness ping) per batch. Dropped after a failed batch, which may have
        # broken it, and when run() ends.
        self._running = False
        self._connection: AsyncConnection | None = None

    @property
    def keys_waiting_for_retry(self) -> int:
        """Partition keys whose head event waits for a delayed retry right now."""
        return len(self._lanes)

    # -- lifecycle --------------------------------------------------------------------
    async def stop(self) -> None:
        """Stop taking deliveries; unacknowledged ones come back to the next consumer."""
        self._stopping.set()

    async def declare(self) -> None:
        """Create the context's durable subscription without consuming.

        On a broker that routes by type a subscription receives the events published
        after it was declared (on a shared log, also what the log still keeps); declare
        it when deploying a context (``tidings declare``; ``tidings consume`` and
        ``tidings run`` do it on start), before the producers it listens to go live.
        """
        await self.transport.connect()
        try:
            await self.transport.declare_subscription(self.group, self.subscriptions.event_types)
        finally:
            await self.transport.close()

    async def run(self) -> None:
        """Consume until :meth:`stop`; survives broker outages.

        When the broker cannot be reached or the connection is lost, the consumer backs
        off (``retry``), reconnects and subscribes again. What it had received but not
        acknowledged comes back from the broker, and the inbox skips what it had
        already handled.
        """
        if not self.subscriptions:
            raise ConfigurationError(
                f"context {self.context.name!r} subscribes no IntegrationEventHandler; "
                "ctx.subscribe(handler) with handle(self, event: SomeIntegrationEvent)"
            )
        await ensure_current(self.context.async_engine, self.context.name)
        self._running = True
        failures = 0
        try:
            while not self._stopping.is_set():
                batches_before = self.stats.batches
                try:
                    await self._subscribe_and_consume()
                    break
                except TransportError as error:
                    # Counted from 1 again once batches went through since the last loss.
                    failures = 1 if self.stats.batches > batches_before else failures + 1
                    await self._lost_broker(error, self.retry.delay(failures))
            if self._lanes.fatal is not None:
                raise self._lanes.fatal
            if self.shards.fatal is not None:
                raise self.shards.fatal
        finally:
            await self._lanes.abandon()
            self._running = False
            await self._drop_connection()
            with contextlib.suppress(Exception):
                await self.transport.close()
            await self.shards.close()  # after the close: the broker took back what we held

    async def _subscribe_and_consume(self) -> None:
        await self.transport.connect()
        await self.transport.declare_subscription(self.group, self.subscriptions.event_types)
        await self._consume(
            await self.shards.batches(
                self.transport, self.subscriptions.event_types, self.batch_size
            )
        )

    async def _lost_broker(self, error: TransportError, delay: float) -> None:
        self.stats.reconnects += 1
        logger.warning(
            "%s: the broker is unreachable (%s); reconnecting in %.2fs", self.group, error, delay
        )
        # Their deliveries belonged to the lost connection: the broker sends them again.
        await self._lanes.abandon()
        self.shards.lost_connection()
        with contextlib.suppress(Exception):
            await self.transport.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)

    async def _consume(self, batches: AsyncIterator[list[Delivery]]) -> None:
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                arrived = asyncio.ensure_future(anext(batches))
                await asyncio.wait({arrived, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not arrived.done():
                    arrived.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await arrived
                    return
                try:
                    batch = arrived.result()
                except StopAsyncIteration:
                    return  # the transport's subscription ended
                await self.process(batch)
        finally:
            stop.cancel()
            close = getattr(batches, "aclose", None)
            if close is not None:
                await close()

    # -- processing -------------------------------------------------------------------
    async def process(self, deliveries: Sequence[Delivery]) -> None:
        """Handle deliveries in order: poison to dead letters, the rest in one transaction."""
        items: list[Item] = []
        rejected: list[tuple[Delivery, Rejection]] = []
        admitted: list[str] = []  # their types, for the received counter
        for delivery in deliveries:
            item = self._admission.admit(delivery)
            if item is None:
                self.stats.ignored += 1
                await delivery.ack()
                continue
            if isinstance(item, Rejection):
                rejected.append((delivery, item))
                continue
            admitted.append(item.event.type)
            if not self._lanes.queue_behind(item):  # else it waits behind its key's failure
                items.append(item)
        if admitted:
            count("received", self.context.name, admitted)
        if rejected and not await self._dead_lettering.rejections(rejected):
            return  # stopped while the database was away: all delivered again
        if not items:
            return
        self.stats.batches += 1
        try:
            await self._handle_together(items)
        except Exception as failure:
            await self._drop_connection()
            failed, error = (
                (failure.item, failure.error)
                if isinstance(failure, HandlerFailed)
                else (None, failure)
            )
            if not await self._lanes.charge(failed, error):  # the failed item's first attempt
                return  # stopped while the database was away: all delivered again
            for item in items:
                if not self._lanes.queue_behind(item):
                    await self._lanes.handle_alone(item)
            return
        await ack_all(self.transport, [item.delivery for item in items])

    async def _handle_together(self, items: Sequence[Item]) -> None:
        """All items in one transaction; duplicates (inbox) skipped. Raises on any failure."""
        if self._connection is None and self._running:
            self._connection = await self.context.async_engine.connect()
        handled, duplicates = await self._handlers.handle_together(items, self._connection)
        # Counted once committed: a failed batch is handled again one by one.
        self.stats.handled += handled
        self.stats.duplicates += duplicates

    async def _handle_once(self, item: Item) -> None:
        """One event in its own transaction, continuing its flow's correlation."""
        if await self._handlers.handle_once(item):
            self.stats.handled += 1
        else:
            self.stats.duplicates += 1

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def _wait_for_database(self, error: BaseException) -> bool:
        waited = await self._database.wait_for(error)
        self.stats.database_outages = self._database.outages
        return waited

    # -- maintenance ----------------------------------------------------------------------
    async def purge_inbox(self) -> int:
        """Delete inbox entries older than ``inbox_retention``."""
        async with self.context.async_engine.begin() as connection:
            result = await connection.execute(purge_statement(self.inbox_retention))
        return int(getattr(result, "rowcount", 0) or 0)

    async def replay(self, letter_ids: Sequence[str] | None = None) -> tuple[int, int]:
        """Run dead letters through the handlers again (the inbox still guarding).

        Succeeded letters are removed; failed ones stay with the new error. Returns
        (succeeded, failed).
        """
        letters: Sequence[DeadLetter]
        if letter_ids is None:
            letters = await self.dead_letters.list(self.group, limit=100_000)
        else:  # only the named ones are read, however many letters there are
            letters = await self.dead_letters.get_many(self.group, letter_ids)
        succeeded = failed = 0
        for letter in letters:
            try:
                self._admission.verify(Delivery(letter.body, dict(letter.headers)))
                event = decode_delivery(letter.body, letter.headers, self.max_message_bytes)
                contract = self._admission.read_contract(event)
                item = Item(Delivery(letter.body, dict(letter.headers)), event, contract)
                await self._handle_once(item)
            except Exception as error:
                failed += 1
                await self.dead_letters.record_failed_replay(letter.letter_id, error)
                continue
            succeeded += 1
            await self.dead_letters.remove([letter.letter_id])
        return succeeded, failed
