"""Consumer processes of one group share the shards of its sharded subscription.

A sharded transport (:meth:`Transport.shard_count` > 1) splits a group's subscription
into N shards by a hash of the partition key; each shard must be read by one process
of the group at a time, or two processes could handle one key's events out of order.
The processes agree on who reads which shard through leases in the consuming
context's database (``tidings_consumer_members``, ``tidings_consumer_shards``, the
mechanism of :mod:`tidings.persistence.leases` that relays use for outbox partitions):

* each process heartbeats every ``ttl / 3`` s, and every 0.5 s during its first 3 s
  and while it holds fewer shards than its fair share ``ceil(N / live processes)``
  and another holds more, so that processes started together, or one joining, get
  their share within moments after the others let go;
* shards within its share are granted to the transport (:class:`ShardSet`);
* shards above it (another process joined) stay leased and renewed, but are revoked:
  the transport stops reading them, and once what it yielded from one was
  acknowledged (:meth:`ShardSet.drained`), its lease is released in a small
  transaction of its own. The next owner reads it from the oldest unacknowledged
  message, which comes after the last one this process handled: per-key order holds
  through every hand-over;
* a process that is killed stops heartbeating: its leases expire after ``ttl`` and
  the others take its shards (the broker gives its unacknowledged messages back);
* one that stops releases every lease after closing its transport, so that the others
  take over at once.

The shard count is the transport's (a fact of the broker topology). When it differs
from the one stored for the group, the rows are made again, unless a live process
holds a shard: then the group's consumers must be stopped first. Deleting the group's
subscription (``tidings declare APP --delete``) deletes its rows too
(:func:`forget_group`), refused while one of its processes is live.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection
from datetime import UTC, datetime

from sqlalchemy import Connection, inspect
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from tidings.errors import ConfigurationError
from tidings.outbox.partitions import default_owner
from tidings.persistence import leases
from tidings.persistence.leases import Lease, LeaseHolder
from tidings.persistence.tables import consumer_members, consumer_shards
from tidings.transports.base import Delivery, Transport
from tidings.transports.sharding import ShardSet

logger = logging.getLogger("tidings.consumer.shards")

__all__ = [
    "CONSUMER_LEASES",
    "DEFAULT_SHARD_LEASE_TTL",
    "ConsumerShards",
    "ShardLeases",
    "consumer_overview",
    "forget_group",
    "rebalance",
]

#: Seconds a consumer's shard leases last without a heartbeat.
DEFAULT_SHARD_LEASE_TTL = 10.0
#: Heartbeat period while a process holds fewer shards than its share.
HUNGRY_INTERVAL = 0.5
#: Seconds after its start during which a process heartbeats every HUNGRY_INTERVAL:
#: the processes of a group are often started together, and the first to heartbeat
#: takes every shard; the others get theirs within moments, not after ttl / 3.
STARTUP_WINDOW = 3.0
#: The consumers' leases: members heartbeat per group, the shards are the units.
CONSUMER_LEASES = leases.LeaseTables(
    consumer_members,
    consumer_shards,
    key="consumer_group",
    number="shard_no",
    counter="handled_total",
)
# A first heartbeat may lose the race to create a new group's shard rows (MariaDB).
_FIRST_ATTEMPTS = 3


def rebalance(
    connection: Connection,
    group: str,
    owner: str,
    ttl: float,
    count: int,
    *,
    handled: int = 0,
    rate: float = 0.0,
    leave: bool = False,
) -> Lease:
    """One heartbeat of ``owner`` in ``group`` with ``count`` shards, in the caller's
    transaction: its fair share, shards above it in :attr:`Lease.excess` (still held;
    :func:`tidings.persistence.leases.release` each once drained). ``leave``: give every
    shard back and end the membership.

    Another ``count`` than the stored one makes the rows again when no other live
    process holds a shard, else raises :class:`ConfigurationError`.
    """
    rows = leases.locked(connection, CONSUMER_LEASES, group)
    if rows and len(rows) != count and not leave:
        holders = [h for h in leases.live_holders(rows, datetime.now(UTC)) if h != owner]
        if holders:
            raise ConfigurationError(
                f"consumer group {group!r} has {len(rows)} shards leased by live consumers "
                f"({', '.join(holders)}) but the transport has {count}: stop every consumer "
                "of the group first, then start them with the new shard count"
            )
        leases.recreate_units(connection, CONSUMER_LEASES, group, count)
    return leases.rebalance(
        connection,
        CONSUMER_LEASES,
        group,
        owner,
        ttl,
        create=lambda c: leases.create_first(c, CONSUMER_LEASES, group, count),
        counted=handled,
        rate=rate,
        leave=leave,
        two_phase=True,
    )


class ShardLeases:
    """The shards one consumer process leases of its group, handed to a :class:`ShardSet`.

    :param count: the group's shard count (the transport's ``shard_count(group)``).
    :param handled: how many events the process handled so far (shown by status).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        group: str,
        count: int,
        owner: str | None = None,
        ttl: float = DEFAULT_SHARD_LEASE_TTL,
    ) -> None:
        if ttl <= 0:
            raise ConfigurationError(f"the shard lease ttl must be positive; got {ttl}")
        self._engine = engine
        self.group = group
        self.owner = owner or default_owner()
        self.ttl = ttl
        self.shards = ShardSet(count)
        self.lease: Lease | None = None
        self._unreleased: set[int] = set()  # drained, their release not committed yet
        self._reported = 0
        self._reported_at: float | None = None
        self._started = time.monotonic()

    async def heartbeat(self, handled: int = 0) -> Lease:
        """Renew the membership and rebalance; grant and revoke accordingly."""
        counted = handled - self._reported
        now = time.monotonic()
        elapsed = 0.0 if self._reported_at is None else now - self._reported_at
        rate = counted / elapsed if elapsed > 0 else 0.0
        for attempt in range(_FIRST_ATTEMPTS if self.lease is None else 1):
            try:
                async with self._engine.begin() as connection:
                    lease = await connection.run_sync(
                        rebalance,
                        self.group,
                        self.owner,
                        self.ttl,
                        self.shards.count,
                        handled=counted,
                        rate=rate,
                    )
                break
            except (IntegrityError, OperationalError):
                # Lost the race to create a new group's shard rows (MariaDB): they exist now.
                if attempt == _FIRST_ATTEMPTS - 1 or self.lease is not None:
                    raise
        self._reported, self._reported_at = handled, now  # committed: counted once
        self.lease = lease
        self.shards.grant(lease.owned)  # also a draining one that is within the share again
        self.shards.revoke(lease.excess)
        return lease

    @property
    def interval(self) -> float:
        """Seconds to the next heartbeat: often while short of the fair share and
        another process holds more than it (it is about to hand shards over)."""
        lease = self.lease
        starting = time.monotonic() - self._started < STARTUP_WINDOW
        if starting or (lease is not None and lease.behind):
            return min(HUNGRY_INTERVAL, self.ttl / 3)
        return self.ttl / 3

    async def release_drained(self) -> None:
        """Release the lease of every shard the transport drained, one transaction each."""
        self._unreleased |= self.shards.drained()
        for shard in sorted(self._unreleased):
            if shard in self.shards.granted:  # granted again meanwhile: keep it
                self._unreleased.discard(shard)
                continue
            async with self._engine.begin() as connection:
                await connection.run_sync(
                    leases.release, CONSUMER_LEASES, self.group, self.owner, [shard]
                )
            self._unreleased.discard(shard)
            logger.info("%s: released shard %d (%s)", self.group, shard, self.owner)

    async def run(self, handled: Callable[[], int] | None = None) -> None:
        """Heartbeat and release drained shards until cancelled.

        A database that does not answer is logged and tried again: the leases expire
        meanwhile, and the others take the shards (the consumer does not crash).
        A :class:`ConfigurationError` (the shard count changed under live consumers)
        ends it.
        """
        # A heartbeat just granted the first shards (ConsumerShards.batches): the next one
        # is due an interval later, not at once.
        due = time.monotonic() + (self.interval if self.lease is not None else 0.0)
        failures = 0
        while True:
            try:
                if time.monotonic() >= due:
                    started = time.monotonic()
                    await self.heartbeat(handled() if handled is not None else 0)
                    due = started + self.interval
                await self.release_drained()
                failures = 0
            except ConfigurationError:
                raise
            except Exception as error:  # the database is away: try again soon
                failures += 1
                logger.warning("%s: shard lease heartbeat failed (%s); retrying", self.group, error)
                due = time.monotonic() + min(self.ttl / 3, 0.2 * 2 ** min(failures, 5))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.shards.wait_drained(), max(due - time.monotonic(), 0.0))

    async def release_all(self) -> None:
        """Give every shard back and end the membership (the transport is closed)."""
        async with self._engine.begin() as connection:
            await connection.run_sync(
                rebalance, self.group, self.owner, self.ttl, self.shards.count, leave=True
            )
        self.lease = None
        self._unreleased.clear()


class ConsumerShards:
    """The sharded side of a running :class:`~tidings.consumer.Consumer`: which
    subscription to read, and the lease loop that lives across reconnections.

    :param stopping: set when the loop ends for good (the shard count changed under
        live consumers); :attr:`fatal` then says why.
    :param handled: the consumer's handled count, reported with each heartbeat.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        group: str,
        *,
        ttl: float,
        stopping: asyncio.Event,
        handled: Callable[[], int],
    ) -> None:
        self._engine = engine
        self.group = group
        self.ttl = ttl
        self._stopping = stopping
        self._handled = handled
        self.leases: ShardLeases | None = None
        self.fatal: ConfigurationError | None = None
        self._loop: asyncio.Task[None] | None = None

    async def batches(
        self, transport: Transport, event_types: Collection[str], max_batch: int
    ) -> AsyncIterator[list[Delivery]]:
        """The batches to consume: the leased shards' when ``transport`` is sharded
        (after ``declare_subscription``), else the whole subscription's."""
        count = transport.shard_count(self.group)
        if count <= 1 and self.leases is None:
            return transport.subscribe_batches(self.group, event_types, max_batch)
        if self.leases is None:
            self.leases = ShardLeases(self._engine, group=self.group, count=count, ttl=self.ttl)
            try:
                await self.leases.heartbeat()
            except ConfigurationError:
                raise
            except Exception as error:  # the lease loop retries; nothing is read meanwhile
                logger.warning("%s: first shard lease heartbeat failed (%s)", self.group, error)
            self._loop = asyncio.create_task(self._run(self.leases))
        elif self.leases.shards.count != count:
            raise ConfigurationError(
                f"the shard count of group {self.group!r} changed from "
                f"{self.leases.shards.count} to {count} while consuming; restart the "
                "group's consumers"
            )
        return transport.subscribe_shards(self.group, event_types, max_batch, self.leases.shards)

    def lost_connection(self) -> None:
        """The subscription ended with the broker connection: nothing reads a revoked
        shard any more, and the broker takes every unacknowledged delivery back."""
        if self.leases is not None:
            shards = self.leases.shards
            for shard in shards.draining:
                shards.stopped(shard)
            shards.forget_outstanding()

    async def close(self) -> None:
        """Stop the lease loop and release every lease (call after the transport closed,
        so that the others take the shards at once)."""
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        leases, self.leases = self.leases, None
        if leases is not None:
            try:
                await leases.release_all()
            except Exception as error:  # they expire after the ttl instead
                logger.warning(
                    "%s: could not release the shard leases (%s); they expire in %gs",
                    self.group,
                    error,
                    self.ttl,
                )

    async def _run(self, leases: ShardLeases) -> None:
        try:
            await leases.run(self._handled)
        except ConfigurationError as error:
            self.fatal = error
            self._stopping.set()


async def forget_group(engine: AsyncEngine, group: str) -> None:
    """Delete the shard lease rows of ``group`` (its subscription is deleted, perhaps to
    change its shard count), refused with :class:`ConfigurationError` while a consumer
    process of the group is live: its membership or a lease has not expired, as
    ``tidings consume --status`` shows it. Nothing to do in a database without the
    tables (no sharded consumer ran there)."""

    def forget(connection: Connection) -> list[str]:
        if not inspect(connection).has_table(consumer_shards.name):
            return []
        return leases.forget(connection, CONSUMER_LEASES, group)

    async with engine.begin() as connection:
        live = await connection.run_sync(forget)
    if live:
        raise ConfigurationError(
            f"consumer group {group!r} has live consumers ({', '.join(live)}), by their "
            "shard leases in the context's database: stop every consumer of the group "
            "(`tidings consume APP --status` lists them) and delete its subscription again"
        )


async def consumer_overview(engine: AsyncEngine) -> tuple[dict[str, int], list[LeaseHolder]]:
    """Every group's shard count and its consumer processes with the shards they hold."""
    async with engine.connect() as connection:
        return await connection.run_sync(leases.holders, CONSUMER_LEASES)
