"""Leases on numbered units shared by the processes of one name, in a pair of tables.

Relays share an outbox's *partitions* (:mod:`tidings.outbox.partitions`), consumer
processes of one group share the group's *shards* (:mod:`tidings.consumer.shard_leases`):
the same mechanism on two pairs of tables, described by a :class:`LeaseTables`.

* A *members* table: one row per process (``owner``) of a name, heartbeated with an
  expiry; a process is live until its row expires.
* A *units* table: one row per unit (``0 .. count - 1``) of a name, with the owner that
  holds it and until when.

A heartbeat renews the member row and, in the same transaction with the unit rows
locked (``SELECT ... FOR UPDATE`` on PostgreSQL and MariaDB; SQLite serializes writers
anyway), rebalances: a process's fair share is ``ceil(count / live members)``; it keeps
what it holds up to its share, takes free or expired units up to it, and renews them.

What happens to the units above the share differs:

* **one phase** (relays): they are released in the same transaction. A relay gives a
  partition back only between batches, so it can let go at once.
* **two phase** (consumers): they stay held, renewed, and are reported as
  :attr:`Lease.excess`; the process stops reading them, waits until what it received
  from them was acknowledged, then :func:`release`\\ s each one. The next owner then
  starts after the last event this process handled.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Column, Connection, Table, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

#: Members silent this long are forgotten (their units were free long before).
FORGET_AFTER = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class LeaseTables:
    """Where one kind of lease lives: the member and unit tables and their columns."""

    members: Table
    units: Table
    key: str
    """The column naming what the units divide (an outbox's name, a consumer group)."""
    number: str
    """The units table's column numbering the units."""
    counter: str
    """The members table's running total (events published, events handled)."""

    def member(self, column: str) -> Column[Any]:
        """A column of the members table."""
        return self.members.c[column]

    def unit(self, column: str) -> Column[Any]:
        """A column of the units table."""
        return self.units.c[column]


@dataclass(frozen=True, slots=True)
class Lease:
    """What one rebalance left a process with."""

    count: int
    """The name's unit count."""
    owned: frozenset[int]
    """The units held within the fair share: read them."""
    excess: frozenset[int]
    """Two phase only: units above the share, still held until released."""
    members: int
    """Live members of the name, this one included."""
    share: int
    """The fair share: ceil(count / members)."""
    behind: bool = False
    """Short of the share while another live member holds more than it: it will get
    units as soon as that one lets go (a reason to heartbeat often)."""


@dataclass(frozen=True, slots=True)
class LeaseHolder:
    """One member process as an operator sees it (``status`` commands)."""

    name: str
    owner: str
    expires_at: datetime
    rate_per_s: float
    total: int
    units: tuple[int, ...]
    """The units it holds (leases current or not)."""

    @property
    def expired(self) -> bool:
        """It stopped heartbeating: killed, stopped, or hanging."""
        return self.expires_at <= datetime.now(UTC)


def fair_share(units: int, members: int) -> int:
    """How many units one of ``members`` live processes may hold: ceil(units / members)."""
    return math.ceil(units / max(members, 1))


def unit_count(connection: Connection, tables: LeaseTables, name: str) -> int:
    """The unit count of ``name``: 0 before any process created the rows."""
    count = connection.execute(
        select(func.count()).select_from(tables.units).where(tables.unit(tables.key) == name)
    ).scalar_one()
    return int(count)


def create_units(connection: Connection, tables: LeaseTables, name: str, count: int) -> None:
    """Create ``count`` unit rows of ``name``, unowned (none may exist yet)."""
    connection.execute(
        insert(tables.units),
        [{tables.key: name, tables.number: number} for number in range(count)],
    )


def create_first(connection: Connection, tables: LeaseTables, name: str, count: int) -> None:
    """The units of a new name, made by its first process. Several starting together race
    for it: on PostgreSQL the losers use the winner's rows (its insert committed when
    theirs fails); on MariaDB a loser's transaction is rolled back (a deadlock or a
    duplicate key) and the caller runs it again. SQLite serializes writers: no race."""
    if connection.dialect.name != "postgresql":
        create_units(connection, tables, name, count)
        return
    try:
        with connection.begin_nested():
            create_units(connection, tables, name, count)
    except IntegrityError:
        pass  # another process created them first


def locked(
    connection: Connection, tables: LeaseTables, name: str
) -> Sequence[tuple[int, str | None, datetime | None]]:
    """The unit rows of ``name`` (number, owner, expiry) in number order, locked until the
    transaction ends."""
    rows = connection.execute(
        select(tables.unit(tables.number), tables.unit("owner"), tables.unit("expires_at"))
        .where(tables.unit(tables.key) == name)
        .order_by(tables.unit(tables.number))
        .with_for_update()
    ).all()
    return [(int(number), holder, until) for number, holder, until in rows]


def live_holders(
    rows: Sequence[tuple[int, str | None, datetime | None]], now: datetime
) -> list[str]:
    """The owners holding a current lease among ``rows``, sorted."""
    return sorted({owner for _, owner, until in rows if owner is not None and is_live(until, now)})


def is_live(expires: datetime | None, now: datetime) -> bool:
    """A lease or membership expiring after ``now``."""
    return expires is not None and expires > now


def recreate_units(connection: Connection, tables: LeaseTables, name: str, count: int) -> None:
    """Replace every unit row of ``name`` by ``count`` unowned ones (the caller checked
    that nobody holds a live lease)."""
    connection.execute(delete(tables.units).where(tables.unit(tables.key) == name))
    create_units(connection, tables, name, count)


def forget(connection: Connection, tables: LeaseTables, name: str) -> list[str]:
    """Delete every unit and member row of ``name``, unless a process of it is live (its
    membership or a unit lease not expired: running, holding units or standing by):
    then delete nothing and return the live owners, sorted."""
    now = datetime.now(UTC)
    live = set(live_holders(locked(connection, tables, name), now))
    member_key = tables.member(tables.key)
    live |= set(
        connection.execute(
            select(tables.member("owner")).where(
                member_key == name, tables.member("expires_at") > now
            )
        ).scalars()
    )
    if live:
        return sorted(live)
    connection.execute(delete(tables.units).where(tables.unit(tables.key) == name))
    connection.execute(delete(tables.members).where(member_key == name))
    return []


def rebalance(
    connection: Connection,
    tables: LeaseTables,
    name: str,
    owner: str,
    ttl: float,
    *,
    create: Callable[[Connection], None],
    counted: int = 0,
    rate: float = 0.0,
    leave: bool = False,
    two_phase: bool = False,
) -> Lease:
    """Heartbeat ``owner`` and take its fair share of ``name``'s units, in one transaction
    (the caller's) with the unit rows locked.

    ``create`` makes the units when the name has none yet. ``counted`` is added to the
    member's running total. ``leave``: give every unit back and end the membership.
    ``two_phase``: keep and renew the units above the share (:attr:`Lease.excess`)
    instead of releasing them.
    """
    now = datetime.now(UTC)
    expires = now + timedelta(seconds=ttl)
    rows = locked(connection, tables, name)
    if not rows:
        create(connection)
        rows = locked(connection, tables, name)
    gone = now - timedelta(seconds=1)
    _heartbeat(connection, tables, name, owner, gone if leave else expires, counted, rate)
    member_key, member_expiry = tables.member(tables.key), tables.member("expires_at")
    connection.execute(
        delete(tables.members).where(member_key == name, member_expiry < now - FORGET_AFTER)
    )
    members = int(
        connection.execute(
            select(func.count())
            .select_from(tables.members)
            .where(member_key == name, member_expiry > now)
        ).scalar_one()
    )
    share = 0 if leave else fair_share(len(rows), members)
    mine = [number for number, holder, _ in rows if holder == owner]
    free = [
        number
        for number, holder, until in rows
        if holder != owner and (holder is None or not is_live(until, now))
    ]
    kept = mine[:share]
    owned = kept + free[: max(share - len(kept), 0)]
    above = mine[share:]
    excess: list[int] = []
    if two_phase and not leave:
        excess = above  # given back by release() once drained
    else:
        _release(connection, tables, name, owner, above)
    if owned or excess:
        connection.execute(
            update(tables.units)
            .where(tables.unit(tables.key) == name, tables.unit(tables.number).in_(owned + excess))
            .values(owner=owner, expires_at=expires)
        )
    others: dict[str, int] = {}
    for _, holder, until in rows:
        if holder is not None and holder != owner and is_live(until, now):
            others[holder] = others.get(holder, 0) + 1
    behind = len(owned) < share and any(held > share for held in others.values())
    return Lease(len(rows), frozenset(owned), frozenset(excess), members, share, behind)


def release(
    connection: Connection, tables: LeaseTables, name: str, owner: str, units: Collection[int]
) -> None:
    """Give ``units`` back, those of them ``owner`` still holds (the second phase)."""
    _release(connection, tables, name, owner, units)


def _release(
    connection: Connection, tables: LeaseTables, name: str, owner: str, units: Collection[int]
) -> None:
    if units:
        connection.execute(
            update(tables.units)
            .where(
                tables.unit(tables.key) == name,
                tables.unit("owner") == owner,
                tables.unit(tables.number).in_(list(units)),
            )
            .values(owner=None, expires_at=None)
        )


def _heartbeat(
    connection: Connection,
    tables: LeaseTables,
    name: str,
    owner: str,
    expires: datetime,
    counted: int,
    rate: float,
) -> None:
    now = datetime.now(UTC)
    values = {"expires_at": expires, "rate_per_s": rate, "updated_at": now}
    total = tables.member(tables.counter)
    result = connection.execute(
        update(tables.members)
        .where(tables.member(tables.key) == name, tables.member("owner") == owner)
        .values({tables.counter: total + counted, **values})
    )
    if not getattr(result, "rowcount", 0):
        connection.execute(
            insert(tables.members).values(
                {tables.key: name, "owner": owner, tables.counter: counted, **values}
            )
        )


def holders(
    connection: Connection, tables: LeaseTables
) -> tuple[dict[str, int], list[LeaseHolder]]:
    """Every name's unit count and every member with the units it holds: live members
    first, then by how many units they hold."""
    held: dict[tuple[str, str], list[int]] = {}
    counts: dict[str, int] = {}
    key, number, holder = tables.unit(tables.key), tables.unit(tables.number), tables.unit("owner")
    for name, unit, owner in connection.execute(select(key, number, holder).order_by(key, number)):
        counts[name] = counts.get(name, 0) + 1
        if owner is not None:
            held.setdefault((name, owner), []).append(int(unit))
    members = [
        LeaseHolder(
            name=row[tables.key],
            owner=row["owner"],
            expires_at=row["expires_at"],
            rate_per_s=float(row["rate_per_s"]),
            total=int(row[tables.counter]),
            units=tuple(held.get((row[tables.key], row["owner"]), ())),
        )
        for row in connection.execute(select(tables.members)).mappings()
    ]
    members.sort(key=lambda m: (m.name, m.expired, -len(m.units), -m.expires_at.timestamp()))
    return counts, members
