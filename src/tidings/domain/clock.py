"""The clock events read their default ``occurred_at`` from; replaceable in tests.

Production code never sets it. ``tidings.testing.deterministic()`` swaps it (and the
id generator's entropy) for a clock a test controls, so ids and times repeat run
after run.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime


def _system_now() -> datetime:
    return datetime.now(UTC)


#: Returns the current time, timezone-aware UTC.
now: Callable[[], datetime] = _system_now


def utc_now() -> datetime:
    """The current time from :data:`now` (aware, UTC)."""
    return now()
