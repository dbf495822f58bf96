"""Sharded subscriptions: which shards of a group one consumer process reads now.

A transport that cannot keep per-key order across competing consumers by itself
(RabbitMQ, Redis Streams, NATS JetStream) can split a group's subscription into
*shards* by a hash of the partition key: every event of one key lands in one shard,
and each shard is read by one consumer process of the group at a time. The processes
of a group agree on who reads which shard through leases in the consuming context's
database (:mod:`tidings.consumer.shard_leases`); this module is the hand-off between
that agreement and the transport:

* the consumer :meth:`ShardSet.grant`\\ s the shards it leased and
  :meth:`ShardSet.revoke`\\ s those it must give back;
* the transport reads only granted shards, :meth:`ShardSet.track`\\ s each delivery it
  yields with its shard, stops reading a revoked shard at once and then calls
  :meth:`ShardSet.stopped`;
* a revoked shard is *drained* once the transport stopped reading it and every
  delivery it yielded from it was acknowledged or rejected; only then does the
  consumer release its lease, so the next owner starts after the last event this
  process handled (per-key order through every hand-over).

A transport that is not sharded ignores all of this (its :meth:`Transport.shard_count`
is 1), and a sharded transport subscribed without a :class:`ShardSet` reads every shard.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tidings.transports.base import Delivery

__all__ = ["ShardSet"]


class ShardSet:
    """The shards of one group's subscription this consumer process may read.

    :param count: the group's shard count; shards are numbered ``0 .. count - 1``.
    """

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError(f"a sharded subscription has at least one shard; got {count}")
        self.count = count
        self._granted: set[int] = set()
        self._revoked: set[int] = set()  # revoked, not yet stopped by the transport
        self._stopped: set[int] = set()  # stopped, deliveries possibly outstanding
        self._outstanding = [0] * count
        self._changed = asyncio.Event()
        self._drained = asyncio.Event()

    def __repr__(self) -> str:
        return f"ShardSet(count={self.count}, granted={sorted(self._granted)})"

    # -- the consumer's side ---------------------------------------------------------
    def grant(self, shards: Iterable[int]) -> None:
        """Let the transport read ``shards`` (leased by this process)."""
        added = {self._check(shard) for shard in shards} - self._granted
        if added:
            self._granted |= added
            self._revoked -= added
            self._stopped -= added
            self._changed.set()

    def revoke(self, shards: Iterable[int]) -> None:
        """Ask the transport to stop reading ``shards``; see :meth:`drained`."""
        removed = {self._check(shard) for shard in shards} & self._granted
        if removed:
            self._granted -= removed
            self._revoked |= removed
            self._changed.set()

    def drained(self) -> frozenset[int]:
        """The revoked shards the transport stopped reading with nothing outstanding:
        their leases may go. Each is reported once."""
        done = {shard for shard in self._stopped if not self._outstanding[shard]}
        self._stopped -= done
        # The rest still have deliveries outstanding: not ready (else a waiter would spin).
        self._drained.clear()
        return frozenset(done)

    async def wait_drained(self) -> None:
        """Until some revoked shard may be released (returns at once if one may)."""
        await self._drained.wait()

    @property
    def draining(self) -> frozenset[int]:
        """Revoked shards not released yet (still read or with deliveries outstanding)."""
        return frozenset(self._revoked | self._stopped)

    def forget_outstanding(self) -> None:
        """The broker connection was lost: it takes back every unacknowledged delivery,
        so none is outstanding any more (a revoked shard is then drained once stopped)."""
        self._outstanding = [0] * self.count
        self._signal_drained()

    # -- the transport's side ----------------------------------------------------------
    @property
    def granted(self) -> frozenset[int]:
        """The shards to read now."""
        return frozenset(self._granted)

    async def changed(self) -> None:
        """Wait until shards were granted or revoked since the last call returned."""
        await self._changed.wait()
        self._changed.clear()

    def track(self, delivery: Delivery, shard: int) -> Delivery:
        """Mark ``delivery`` as read from ``shard``: outstanding until acknowledged or
        rejected (:meth:`Delivery.ack`, :meth:`Delivery.nack`, :func:`ack_all`)."""
        self._outstanding[self._check(shard)] += 1
        delivery.shard = shard
        delivery._settle = self._settled  # the delivery calls back when settled
        return delivery

    def stopped(self, shard: int) -> None:
        """The transport reads nothing more from revoked ``shard`` (its broker-side
        consumer was cancelled, its reads ended)."""
        if shard in self._revoked:
            self._revoked.discard(shard)
            self._stopped.add(shard)
            self._signal_drained()

    def stop_unread(self, reading: Collection[int]) -> None:
        """Call :meth:`stopped` for each revoked shard not in ``reading`` (the shards the
        transport reads now): one revoked before the transport started reading it (a
        heartbeat between the lease and the subscription) must drain too."""
        for shard in self._revoked - set(reading):
            self.stopped(shard)

    # -- internals ---------------------------------------------------------------------
    def _settled(self, shard: int) -> None:
        if self._outstanding[shard]:
            self._outstanding[shard] -= 1
        if shard in self._stopped and not self._outstanding[shard]:
            self._drained.set()

    def _signal_drained(self) -> None:
        if any(not self._outstanding[shard] for shard in self._stopped):
            self._drained.set()

    def _check(self, shard: int) -> int:
        if not 0 <= shard < self.count:
            raise ValueError(f"shard {shard} is outside 0..{self.count - 1}")
        return shard
