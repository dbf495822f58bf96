"""What one consumer run counted."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class ConsumerStats:
    """Counters of one consumer run.

    ``skipped``: other contexts' types a shared log passed over by their routing
    metadata; ``ignored``: messages acknowledged unread (``unknown_types="ignore"``, or a
    shared-log message without routing metadata of a type the group does not handle).
    """

    handled: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    ignored: int = 0
    retries: int = 0
    batches: int = 0
    reconnects: int = 0
    database_outages: int = 0
    _skip_counter: Callable[[], int] = field(default=lambda: 0, repr=False, compare=False)

    @property
    def skipped(self) -> int:
        """Other contexts' types the shared log passed over (read from the transport)."""
        return self._skip_counter()
