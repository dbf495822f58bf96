"""A clock and ids a test controls: the same run gives the same ids and times.

::

    with deterministic() as clock:
        first = ProductPutOnSale(product_id="p-1")
        clock.advance(seconds=5)
        second = ProductPutOnSale(product_id="p-1")
    assert second.occurred_at - first.occurred_at == timedelta(seconds=5, milliseconds=1)

Inside the block every default ``occurred_at`` reads the controlled clock, which moves
on by ``step`` at each reading, and every event id is a UUIDv7 made from that clock
and a seeded generator. Ids keep their order and format; they are only predictable.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from tidings.domain import clock as domain_clock
from tidings.domain import ids


class TestClock:
    """A clock that starts at ``start`` and moves on by ``step`` at each reading."""

    __test__ = False  # not a pytest test class

    def __init__(self, start: datetime, step: timedelta) -> None:
        self._now = start if start.tzinfo else start.replace(tzinfo=UTC)
        self._step = step
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The current test time, then one step later."""
        with self._lock:
            current = self._now
            self._now += self._step
            return current

    def peek(self) -> datetime:
        """The time the next reading returns, without moving."""
        return self._now

    def advance(self, delta: timedelta | None = None, *, seconds: float = 0.0) -> None:
        """Move the clock forward by ``delta`` and/or ``seconds``."""
        with self._lock:
            self._now += (delta or timedelta()) + timedelta(seconds=seconds)

    def time_ns(self) -> int:
        """The current test time in nanoseconds since the epoch, without moving."""
        return int(self._now.timestamp() * 1_000_000_000)


@contextmanager
def deterministic(
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
    *,
    step: timedelta = timedelta(milliseconds=1),
    seed: int = 0,
) -> Iterator[TestClock]:
    """Make event times and ids predictable inside the block; restores them after."""
    clock = TestClock(start, step)
    generator = random.Random(seed)
    saved = (domain_clock.now, ids._clock_ns, ids._entropy, ids._last_ms, ids._counter)
    domain_clock.now = clock.now
    ids._clock_ns = clock.time_ns
    ids._entropy = generator.randbytes
    ids._last_ms, ids._counter = 0, 0
    try:
        yield clock
    finally:
        domain_clock.now, ids._clock_ns, ids._entropy, ids._last_ms, ids._counter = saved
