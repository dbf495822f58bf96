"""One active relay per outbox: a lease row, renewed while the relay works.

Why a single active relay rather than several sharing rows with SKIP LOCKED: two relays
publishing different rows of the same partition key concurrently can reorder them on
the wire. One relay per outbox keeps per-key order trivially, and throughput is bound
by the broker's confirmations anyway. Standby relays take over when the lease expires
(a relay killed with SIGKILL stops renewing it). Two relays can briefly overlap after
an expiry; that only duplicates messages (each relay publishes in position order, so
first arrivals stay ordered), which consumers' inboxes absorb.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tidings.domain.ids import uuid7
from tidings.persistence.tables import relay_lease

_c = relay_lease.c


def default_owner() -> str:
    """host:pid:random, readable in ``outbox status``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid7().hex[-6:]}"


class RelayLease:
    """The lease named ``name`` in the outbox's database, held by ``owner``."""

    def __init__(self, engine: AsyncEngine, *, name: str, owner: str, ttl: float) -> None:
        self._engine = engine
        self.name = name
        self.owner = owner
        self.ttl = ttl
        self._held_until: datetime | None = None

    @property
    def renew_due(self) -> bool:
        """True once a third of the lease has elapsed (renewals are cheap but not free)."""
        if self._held_until is None:
            return True
        return datetime.now(UTC) >= self._held_until - timedelta(seconds=self.ttl * 2 / 3)

    async def acquire(self, *, published: int = 0, rate: float = 0.0) -> bool:
        """Take or renew the lease; False while another live relay holds it."""
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=self.ttl)
        async with self._engine.begin() as connection:
            result = await connection.execute(
                update(relay_lease)
                .where(_c.name == self.name, (_c.owner == self.owner) | (_c.expires_at < now))
                .values(
                    owner=self.owner,
                    expires_at=expires,
                    published_total=_c.published_total + published,
                    rate_per_s=rate,
                    updated_at=now,
                )
            )
            taken = bool(getattr(result, "rowcount", 0))
        if not taken:
            taken = await self._create(expires, now)
        self._held_until = expires if taken else None
        return taken

    async def _create(self, expires: datetime, now: datetime) -> bool:
        try:
            async with self._engine.begin() as connection:
                await connection.execute(
                    insert(relay_lease).values(
                        name=self.name,
                        owner=self.owner,
                        expires_at=expires,
                        published_total=0,
                        rate_per_s=0.0,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            return False  # another relay holds it
        return True

    async def release(self) -> None:
        """Let a standby relay take over at once instead of after expiry."""
        past = datetime.now(UTC) - timedelta(seconds=1)
        async with self._engine.begin() as connection:
            await connection.execute(
                update(relay_lease)
                .where(_c.name == self.name, _c.owner == self.owner)
                .values(expires_at=past, rate_per_s=0.0)
            )
        self._held_until = None
