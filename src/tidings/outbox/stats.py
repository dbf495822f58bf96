"""What a relay counts, and how it turns the rows of a batch into CloudEvents."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from tidings.contracts.cloud_event import CloudEvent
from tidings.contracts.envelope import OutboxRow, cloud_event_from_row
from tidings.contracts.signing import KeyRing

#: CloudEvents grouped by consecutive source, in row order.
SourceGroups = list[tuple[str, list[CloudEvent]]]


def source_groups(rows: Sequence[OutboxRow], signing: KeyRing | None) -> SourceGroups:
    """The CloudEvents of ``rows``, signed when ``signing`` is given.

    A batch normally holds one source (the context); it is split where the source
    changes so that each transport call names the right producer.
    """
    groups: SourceGroups = []
    for row in rows:
        event = cloud_event_from_row(cast(Mapping[str, Any], row))
        if signing is not None:
            event = signing.sign(event)  # once per event, as its wire form is built
        if not groups or groups[-1][0] != event.source:
            groups.append((event.source, []))
        groups[-1][1].append(event)
    return groups


@dataclass(slots=True)
class RelayStats:
    """Counters of one relay run, for progress displays and benchmarks."""

    published: int = 0
    #: Events no subscription took, archived as unrouted (after ``unrouted_grace``).
    unroutable: int = 0
    #: Times the relay held the outbox because a type had no subscription yet.
    held: int = 0
    batches: int = 0
    failures: int = 0
    last_error: str | None = None
    started_at: float = field(default_factory=time.monotonic)
    _window: deque[tuple[float, int]] = field(default_factory=deque, repr=False)

    def record(self, count: int) -> None:
        self.published += count
        self.batches += 1
        now = time.monotonic()
        self._window.append((now, count))
        while self._window and self._window[0][0] < now - 60:
            self._window.popleft()

    @property
    def rate_per_s(self) -> float:
        """Events per second over the last minute."""
        if not self._window:
            return 0.0
        span = max(time.monotonic() - self._window[0][0], 1.0)
        return sum(count for _, count in self._window) / span
