"""The relay: forwards a context's outbox to the broker, in order, losing nothing.

Rows are read in position order, published as one batch with pipelined
confirmations, and deleted (or archived) only after the broker confirmed them all.
Whatever fails - broker, network, database - the batch is retried with capped
exponential backoff and jitter; nothing is dropped, skipped or reordered. A crash
between confirmation and deletion re-sends the batch: duplicates, never loss, and the
consumers' inboxes make duplicates harmless.

Several relay processes can share one outbox: each owns a share of its partitions and
reads only their rows, keeping per-key order through every rebalance
(:mod:`tidings.outbox.partitions`); one relay alone owns them all. The read-ahead and
the marks in flight are :mod:`tidings.outbox.pipeline`.

Run it as ``tidings relay APP`` or embedded::

    relay = Relay(context)
    task = asyncio.create_task(relay.run())
    ...
    await relay.stop()   # finishes the batch in flight, then returns

Events no subscription takes are never counted as delivered: see
:mod:`tidings.outbox.unrouted` (``unrouted_grace``, ``stats.held``, ``stats.unroutable``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from tidings.application.retry import RetryPolicy
from tidings.contracts.envelope import OutboxRow
from tidings.contracts.limits import check_batch_size
from tidings.contracts.signing import KeyRing
from tidings.observability.metrics import count_rows, record_relay_delays
from tidings.observability.tracing import messaging_system, send_span
from tidings.outbox.partitions import PartitionLeases, default_owner
from tidings.outbox.pipeline import RETRYABLE, ReadPipeline
from tidings.outbox.stats import RelayStats
from tidings.outbox.store import OutboxStore, Retention
from tidings.outbox.unrouted import UnroutedTypes
from tidings.outbox.wakeup import Wakeup
from tidings.persistence.migrations import ensure_current
from tidings.redaction import redact
from tidings.transports.base import Transport, TransportError
from tidings.transports.registry import open_transport

if TYPE_CHECKING:
    from tidings.context import BoundedContext

logger = logging.getLogger("tidings.relay")

# How long the relay waits before publishing again events no subscription took yet.
_HOLD_INTERVAL = 0.25


class Relay:
    """Forwards the outbox of ``context`` to its broker.

    :param transport: defaults to the one named by ``context.broker_url``.
    :param batch_size: rows per broker batch (one round of pipelined confirms).
    :param retention: delete confirmed rows, or archive them for replay.
    :param retry: backoff while the broker or database is unavailable.
    :param lease_ttl: seconds before the partitions of a silent relay go to the others
        (several relays share an outbox by partitions: :mod:`tidings.outbox.partitions`).
    :param signing: the key ring whose first key signs every event; by default read from
        the environment for the context (:meth:`KeyRing.from_environment`); empty: unsigned.
    :param complete_after_commit: also run due after-commit handlers of the context
        (work left behind by failures or crashes), every ``after_commit_interval`` s.
    :param unrouted_grace: seconds an event type that no subscription takes holds the
        outbox before its events are archived as unrouted (:mod:`tidings.outbox.unrouted`).
    """

    def __init__(
        self,
        context: BoundedContext,
        transport: Transport | None = None,
        *,
        batch_size: int = 500,
        retention: Retention | str = Retention.DELETE,
        retry: RetryPolicy | None = None,
        lease_ttl: float = 10.0,
        max_idle_interval: float = 1.0,
        complete_after_commit: bool = True,
        after_commit_interval: float = 5.0,
        unrouted_grace: float = 30.0,
        signing: KeyRing | None = None,
    ) -> None:
        check_batch_size(batch_size)
        self.context = context
        self.transport = transport or open_transport(context.broker_url)
        self.batch_size = batch_size
        self.retention = Retention(retention)
        self.retry = retry or RetryPolicy(initial_delay=0.05, max_delay=10.0)
        self.store = OutboxStore(context.async_engine)
        self.lease = PartitionLeases(
            context.async_engine, name=context.name, owner=default_owner(), ttl=lease_ttl
        )
        self._wakeup = Wakeup(context.async_engine.url, max_interval=max_idle_interval)
        self._complete_after_commit = complete_after_commit
        self._after_commit_interval = after_commit_interval
        self._next_after_commit = 0.0
        self._stopping = asyncio.Event()
        self._unreported = 0
        self._pipeline = ReadPipeline(self.store, batch_size)
        self._unrouted = UnroutedTypes(unrouted_grace)
        self.stats = RelayStats()
        self._system = messaging_system(self.transport.url)
        self.signing = KeyRing.from_environment(context.name) if signing is None else signing

    @property
    def signing(self) -> KeyRing:
        """The key ring whose first key signs every event (empty: unsigned)."""
        return self._signing

    @signing.setter
    def signing(self, ring: KeyRing) -> None:
        self._signing = ring
        self._pipeline.signing = ring or None

    # -- lifecycle --------------------------------------------------------------------
    async def stop(self) -> None:
        """Ask the relay to finish its batch in flight and return from :meth:`run`."""
        self._stopping.set()

    async def run(self) -> None:
        """Relay until :meth:`stop`; survives broker and database outages."""
        await ensure_current(self.context.async_engine, self.context.name)
        await self._connect()
        try:
            await self._wakeup.start()
            while not self._stopping.is_set():
                if not await self._hold_lease():
                    await self._sleep(self.lease.ttl / 3)
                    continue
                relayed = await self._relay_once()
                if relayed is None:
                    continue  # failed: backed off already
                if relayed:
                    self._wakeup.busy()
                if relayed < self.batch_size:
                    # Caught up as of that read: wait for the next commit's notification
                    # (or the next poll) instead of reading an empty outbox first, which
                    # would delay the events committed meanwhile by two round trips.
                    await self._idle()
        finally:
            await self._shutdown()

    async def drain(self) -> int:
        """Relay until the outbox is empty, then return how many events were sent.

        With other relays on the outbox: until the partitions this relay owns are empty.
        """
        await ensure_current(self.context.async_engine, self.context.name)
        await self._connect()
        before = self.stats.published
        try:
            while not self._stopping.is_set():
                if not await self._hold_lease():
                    await self._sleep(self.lease.ttl / 3)
                    continue
                relayed = await self._relay_once()
                if relayed == 0:
                    break
        finally:
            await self._shutdown()
        return self.stats.published - before

    # -- one step -----------------------------------------------------------------------
    async def _relay_once(self) -> int | None:
        """Publish one batch; its size, or None after a failure (already backed off).

        Pipelined, because the database and the broker each wait for the other
        otherwise: while the broker confirms this batch, the next rows are read, and
        this batch's rows are deleted while the next batch is published. A batch is
        marked only once confirmed; a read from the start of the outbox first waits for
        the marks in flight, so that no confirmed row is read (and sent) again. After a
        failure the pipeline is dropped and relaying resumes at the first row not
        confirmed, as before.
        """
        rows: Sequence[OutboxRow] = ()
        published = False
        try:
            rows, groups = await self._pipeline.next_batch()
            if not rows:
                return 0
            self._pipeline.read_ahead(rows)
            unroutable: list[int] = []
            start = 0
            with send_span(self._system, rows):
                for source, events in groups:
                    taken_by_none = await self.transport.publish_batch(source, events)
                    unroutable += sorted(start + index for index in taken_by_none)
                    start += len(events)
            published = True
            if unroutable or self._unrouted:
                kept = await self._keep_unroutable(rows, unroutable)
                if kept is not False:
                    return kept
            count_rows("relayed", rows)
            record_relay_delays(rows)
            await self._pipeline.mark(rows, self.retention)
        except RETRYABLE as error:
            await self._pipeline.drop()
            # Rows confirmed but not marked are sent again later: duplicates, not loss.
            await self._failed(() if published else rows, error)
            return None
        self.stats.record(len(rows))
        self._unreported += len(rows)
        return len(rows)

    async def _keep_unroutable(
        self, rows: Sequence[OutboxRow], unroutable: list[int]
    ) -> int | Literal[False] | None:
        """Hold the outbox at, or archive as unrouted, what no subscription took.

        False when the batch goes on as usual; else its rows are marked already and
        this returns how many, or None after holding (publishing again shortly).
        """
        settled = await self._unrouted.settle(
            self.context.name, self.store, self.retention, rows, unroutable
        )
        if settled is None:
            return False
        await self._pipeline.drop()
        self.stats.unroutable += settled.unrouted
        self.stats.record(settled.sent)
        self._unreported += settled.sent
        if settled.held_type is None or settled.held_position is None:
            return settled.sent
        self.stats.held += 1
        if self.stats.held == 1 or self.stats.held % 100 == 0:
            logger.warning(
                "%s: no subscription takes %s yet; holding the outbox for up to %g s so "
                "that a consumer starting now gets it (tidings declare APP declares one)",
                self.context.name,
                settled.held_type,
                self._unrouted.grace,
            )
        with contextlib.suppress(*RETRYABLE):
            await self.store.record_failure(
                [settled.held_position],
                TransportError(f"no subscription takes {settled.held_type} yet: held"),
            )
        await self._sleep(_HOLD_INTERVAL)
        return None

    async def _failed(self, rows: Sequence[OutboxRow], error: BaseException) -> None:
        self.stats.failures += 1
        self.stats.last_error = f"{type(error).__name__}: {error}"
        delay = self.retry.delay(self.stats.failures)
        logger.warning(
            "relay of %s failed (%s); retrying in %.2fs",
            self.context.name,
            redact(str(error)),
            delay,
        )
        if rows:
            with contextlib.suppress(*RETRYABLE):
                await self.store.record_failure([row["position"] for row in rows], error)
        await self._sleep(delay)
        if isinstance(error, TransportError | OSError | TimeoutError):
            await self._reconnect()

    # -- helpers --------------------------------------------------------------------------
    async def _hold_lease(self) -> bool:
        """Heartbeat when due and rebalance; True while this relay owns partitions.

        The mark in flight is settled first, so a partition given back has no batch
        confirmed but unmarked (its new owner would send that again). Rows read ahead
        for another set of partitions are dropped: the next read starts from the oldest
        pending row of the partitions owned now.
        """
        if not self.lease.renew_due:
            return bool(self._pipeline.ownership and self._pipeline.ownership.owned)
        try:
            await self._pipeline.settle_marking()
            published, self._unreported = self._unreported, 0
            ownership = await self.lease.heartbeat(published=published, rate=self.stats.rate_per_s)
        except RETRYABLE as error:
            await self._pipeline.drop()
            await self._failed((), error)
            return False
        # The partitions this relay reads from now on.
        previous, self._pipeline.ownership = self._pipeline.ownership, ownership
        if previous is None or (previous.partitions, previous.owned) != (
            ownership.partitions,
            ownership.owned,
        ):
            await self._pipeline.drop()
            if previous is not None:
                logger.info(
                    "%s: relay %s owns %d of %d partitions (%d relays)",
                    self.context.name,
                    self.lease.owner,
                    len(ownership.owned),
                    ownership.partitions,
                    ownership.members,
                )
        return bool(ownership.owned)

    async def _idle(self) -> None:
        self.stats.failures = 0
        await self._complete_pending_after_commit()
        wait = asyncio.ensure_future(self._wakeup.wait())
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({wait, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (wait, stop):
                task.cancel()

    async def _complete_pending_after_commit(self) -> None:
        if not self._complete_after_commit or time.monotonic() < self._next_after_commit:
            return
        self._next_after_commit = time.monotonic() + self._after_commit_interval
        try:
            await self.context.acomplete_pending_handlers()
        except Exception:
            logger.exception("running pending after-commit handlers failed; will retry")

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _connect(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            try:
                await self.transport.connect()
                return
            except RETRYABLE as error:
                attempt += 1
                delay = self.retry.delay(attempt)
                logger.warning(
                    "broker unreachable (%s); retrying in %.2fs", redact(str(error)), delay
                )
                self.stats.failures += 1
                self.stats.last_error = f"{type(error).__name__}: {error}"
                await self._record_unreachable(error)
                await self._sleep(delay)

    async def _record_unreachable(self, error: BaseException) -> None:
        """Count a failed attempt on the rows first in line, so ``outbox status`` shows
        why they wait even when the broker was down before anything could be sent."""
        with contextlib.suppress(*RETRYABLE):
            if self.lease.renew_due:
                # Which rows are this relay's: those of the partitions it would relay.
                self._pipeline.ownership = await self.lease.heartbeat()
            if self._pipeline.ownership is None:
                return
            rows = await self.store.fetch_pending(
                self.batch_size, ownership=self._pipeline.ownership
            )
            if rows:
                await self.store.record_failure([row["position"] for row in rows], error)

    async def _reconnect(self) -> None:
        with contextlib.suppress(Exception):
            await self.transport.close()
        await self._connect()

    async def _shutdown(self) -> None:
        with contextlib.suppress(Exception):
            await self._pipeline.drop()
        with contextlib.suppress(Exception):
            await self.store.close()
        await self._wakeup.stop()
        with contextlib.suppress(*RETRYABLE):
            await self.lease.release(published=self._unreported)
            self._unreported = 0
        self._pipeline.ownership = None
        with contextlib.suppress(Exception):
            await self.transport.close()
