"""Several relays on one outbox: partitions, owned through leases, keep per-key order.

Every outbox row stores a *slot*, ``crc32(partition key) % 4096``
(:func:`tidings.contracts.envelope.partition_slot`), fixed when the row is made. An
outbox has a partition count P (any value from 1 to 4096, :data:`DEFAULT_PARTITIONS`
unless ``tidings db init APP --partitions N`` or ``tidings outbox partitions APP N``
chose another), one ``tidings_relay_partitions`` row per partition; a row belongs to
partition ``slot % P``, so all the rows of one key belong to one partition.

Each relay process heartbeats its ``tidings_relay_members`` row every ``ttl / 3`` s
and, in the same transaction, with the partition rows locked (``SELECT ... FOR
UPDATE`` on PostgreSQL and MariaDB; SQLite serializes writers anyway), rebalances: its
fair share is ``ceil(P / live relays)``; it gives back the partitions above its share
and takes free or expired ones up to it, and renews the rest for ``ttl`` s. A relay
reads only "the oldest pending rows of my partitions, in position order" and gives a
partition back only after the batch it has in flight was confirmed and marked; one
killed stops renewing, and its partitions are free once their lease expired. One relay
alone owns every partition and reads exactly as a single relay always did.

Why per-key order holds through every rebalance, with marks (deletes or archives of
confirmed rows) that are not fenced by the lease:

* A relay publishes a row only after every earlier row of its key was confirmed by the
  broker, or comes before it in the same batch: it reads the oldest pending rows of a
  partition, and a row stops being pending only once confirmed. (A batch read ahead is
  published only after the batch before it was confirmed; it is dropped whenever the
  owned set changes, because a read past the last row of the old set would skip the
  older rows of a partition just taken.)
* So the first arrival of any row at the broker follows the first arrivals of the
  earlier rows of its key, whichever relay sent each. A relay that stalled past its
  lease and wakes up while another owns its partitions can only send rows again whose
  earlier rows were confirmed already: duplicates, which the consumers' inboxes absorb,
  never a loss (nothing is marked unless confirmed) nor an inversion of first arrivals.

Changing P moves keys between partitions, so it is refused while live relays hold
partitions (:class:`~tidings.errors.PartitionsInUseError`): stop the relays first.

The membership and rebalance core is :mod:`tidings.persistence.leases` (consumer
shards use it too), here in its one-phase form: partitions above the share are given
back in the heartbeat's transaction.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from tidings.contracts.envelope import PARTITION_SLOTS
from tidings.domain.ids import uuid7
from tidings.errors import ConfigurationError, PartitionsInUseError
from tidings.persistence import leases
from tidings.persistence.leases import fair_share as _fair_share
from tidings.persistence.tables import relay_members, relay_partitions

#: Partitions of an outbox unless chosen otherwise.
DEFAULT_PARTITIONS = 16

#: The relays' leases: members heartbeat per outbox name, partitions are the units.
RELAY_LEASES = leases.LeaseTables(
    relay_members, relay_partitions, key="name", number="partition_no", counter="published_total"
)
# A relay's first heartbeat may lose the race to create a new outbox's partitions.
_FIRST_ATTEMPTS = 3


def default_owner() -> str:
    """host:pid:random, readable in ``outbox status``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid7().hex[-6:]}"


def fair_share(partitions: int, members: int) -> int:
    """How many partitions one of ``members`` live relays may own: ceil(P / members)."""
    return _fair_share(partitions, members)


def check_partition_count(count: int) -> None:
    """Raise :class:`ConfigurationError` unless 1 <= ``count`` <= 4096."""
    if not 1 <= count <= PARTITION_SLOTS:
        raise ConfigurationError(
            f"an outbox has 1 to {PARTITION_SLOTS} partitions (a row's partition is its "
            f"slot, 0..{PARTITION_SLOTS - 1}, modulo the count); got {count}"
        )


@dataclass(frozen=True, slots=True)
class Ownership:
    """What one rebalance left a relay with."""

    partitions: int
    """P, the outbox's partition count."""
    owned: frozenset[int]
    members: int
    """Live relays of the outbox, this one included."""

    @property
    def owns_all(self) -> bool:
        return len(self.owned) == self.partitions


def partition_count(connection: Connection, name: str) -> int:
    """P of the outbox ``name``: 0 before any relay or ``db init`` created the rows."""
    return leases.unit_count(connection, RELAY_LEASES, name)


def create_partitions(connection: Connection, name: str, count: int) -> None:
    """Create the partition rows of ``name``, unowned (none may exist yet)."""
    check_partition_count(count)
    leases.create_units(connection, RELAY_LEASES, name, count)


def ensure_partitions(connection: Connection, name: str, count: int) -> int:
    """Create ``count`` partitions for ``name`` unless it has some; P afterwards."""
    existing = partition_count(connection, name)
    if existing:
        return existing
    create_partitions(connection, name, count)
    return count


def set_partition_count(connection: Connection, name: str, count: int) -> int:
    """Change P of ``name`` to ``count``; the previous count.

    Raises :class:`PartitionsInUseError` while a live relay holds a partition: with
    relays at work, keys would move between partitions under them.
    """
    check_partition_count(count)
    rows = leases.locked(connection, RELAY_LEASES, name)
    holders = leases.live_holders(rows, datetime.now(UTC))
    if holders:
        raise PartitionsInUseError(
            f"relays still hold partitions of outbox {name!r} ({', '.join(holders)}): "
            "stop every relay of the context first, then change the partition count"
        )
    leases.recreate_units(connection, RELAY_LEASES, name, count)
    return len(rows)


def rebalance(
    connection: Connection,
    name: str,
    owner: str,
    ttl: float,
    *,
    published: int = 0,
    rate: float = 0.0,
    leave: bool = False,
) -> Ownership:
    """Heartbeat ``owner`` and take its fair share of ``name``'s partitions, in one
    transaction (the caller's) with the partition rows locked. ``leave``: give every
    partition back and end the membership instead. The partitions above the share are
    given back at once (a relay lets go between batches)."""
    lease = leases.rebalance(
        connection,
        RELAY_LEASES,
        name,
        owner,
        ttl,
        create=lambda c: leases.create_first(c, RELAY_LEASES, name, DEFAULT_PARTITIONS),
        counted=published,
        rate=rate,
        leave=leave,
    )
    return Ownership(lease.count, lease.owned, lease.members)


class PartitionLeases:
    """The partitions one relay owns of the outbox ``name``, renewed while it works."""

    def __init__(self, engine: AsyncEngine, *, name: str, owner: str, ttl: float) -> None:
        if ttl <= 0:
            raise ConfigurationError(f"the relay lease ttl must be positive; got {ttl}")
        self._engine = engine
        self.name = name
        self.owner = owner
        self.ttl = ttl
        self.ownership: Ownership | None = None
        self._renewed_at: float | None = None

    @property
    def renew_due(self) -> bool:
        """True once a third of the lease has elapsed (heartbeats are cheap, not free)."""
        if self._renewed_at is None:
            return True
        return time.monotonic() >= self._renewed_at + self.ttl / 3

    async def heartbeat(self, *, published: int = 0, rate: float = 0.0) -> Ownership:
        """Renew the membership and rebalance; the partitions owned now."""
        started = time.monotonic()
        for attempt in range(_FIRST_ATTEMPTS if self.ownership is None else 1):
            try:
                async with self._engine.begin() as connection:
                    ownership = await connection.run_sync(
                        rebalance, self.name, self.owner, self.ttl, published=published, rate=rate
                    )
                break
            except (IntegrityError, OperationalError):
                # Lost the race to create a new outbox's partitions (MariaDB): they exist now.
                if attempt == _FIRST_ATTEMPTS - 1 or self.ownership is not None:
                    raise
        # Counted from before the transaction: the leases run from a moment no later.
        self._renewed_at = started
        self.ownership = ownership
        return ownership

    async def release(self, *, published: int = 0) -> None:
        """Give every partition back, so that the other relays take them at once."""
        async with self._engine.begin() as connection:
            await connection.run_sync(
                rebalance, self.name, self.owner, self.ttl, published=published, leave=True
            )
        self._renewed_at = None
        self.ownership = None


@dataclass(frozen=True, slots=True)
class RelayMember:
    """One relay process of an outbox, as ``tidings outbox status`` shows it."""

    name: str
    owner: str
    expires_at: datetime
    rate_per_s: float
    published_total: int
    partitions: tuple[int, ...]
    """The partitions it holds (leases current or not)."""

    @property
    def expired(self) -> bool:
        """It stopped heartbeating: killed, stopped, or hanging."""
        return self.expires_at <= datetime.now(UTC)


def relay_overview(connection: Connection) -> tuple[int | None, list[RelayMember]]:
    """P (None before any relay ran) and the relays of the database's outbox: live
    ones first, then by how many partitions they hold."""
    counts, holders = leases.holders(connection, RELAY_LEASES)
    members = [
        RelayMember(
            name=h.name,
            owner=h.owner,
            expires_at=h.expires_at,
            rate_per_s=h.rate_per_s,
            published_total=h.total,
            partitions=h.units,
        )
        for h in holders
    ]
    members.sort(key=lambda m: (m.expired, -len(m.partitions), -m.expires_at.timestamp()))
    return (sum(counts.values()) if counts else None), members
