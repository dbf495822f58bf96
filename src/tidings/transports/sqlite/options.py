"""The SQLite broker's URL options and its per-partition status report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from tidings.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class SqliteBrokerOptions:
    """Tuning of one :class:`SqliteTransport`, read from the URL's query string."""

    partitions: int | None = None
    lease: float = 15.0
    poll_interval: float = 0.1
    busy_timeout: float = 5.0
    retention: float = 60.0
    synchronous: str = "full"
    batch: int = 256
    max_unacked: int = 1024

    @classmethod
    def from_query(cls, query: str) -> SqliteBrokerOptions:
        """Parse ``partitions=16&lease=5``; unknown or invalid options are a ConfigurationError."""
        known = {name for name in cls.__slots__ if not name.startswith("_")}
        values: dict[str, Any] = {}
        for name, raw in parse_qsl(query, keep_blank_values=True):
            if name not in known:
                raise ConfigurationError(
                    f"unknown sqlite:// broker option {name!r}; known: {', '.join(sorted(known))}"
                )
            try:
                if name in ("partitions", "batch", "max_unacked"):
                    values[name] = int(raw)
                elif name == "synchronous":
                    values[name] = raw.lower()
                else:
                    values[name] = float(raw)
            except ValueError as exc:
                raise ConfigurationError(
                    f"sqlite:// broker option {name}={raw!r} is not a number"
                ) from exc
        options = cls(**values)
        options._validate()
        return options

    def _validate(self) -> None:
        if self.partitions is not None and not 1 <= self.partitions <= 4096:
            raise ConfigurationError("sqlite:// option partitions must be between 1 and 4096")
        if min(self.lease, self.poll_interval, self.busy_timeout) <= 0:
            raise ConfigurationError(
                "sqlite:// options lease, poll_interval and busy_timeout must be positive"
            )
        if self.retention < 0:
            raise ConfigurationError("sqlite:// option retention must be >= 0 (0 turns it off)")
        if self.synchronous not in ("full", "normal"):
            raise ConfigurationError("sqlite:// option synchronous must be 'full' or 'normal'")
        if self.batch < 1 or self.max_unacked < 1:
            raise ConfigurationError("sqlite:// options batch and max_unacked must be >= 1")


@dataclass(frozen=True, slots=True)
class PartitionStatus:
    """Where one group stands on one partition (for status and lag reports)."""

    group: str
    partition: int
    committed: int
    end: int
    owner: str | None
    lease_until: float

    @property
    def lag(self) -> int:
        """Offsets not yet committed (an upper bound: it counts other types too)."""
        return max(self.end - self.committed, 0)
