"""Exponential backoff with jitter, shared by every retrying part of tidings."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to wait before attempt ``n + 1`` after ``n`` failures.

    The delay doubles (``multiplier``) from ``initial_delay`` up to ``max_delay``; the
    ``jitter`` fraction of it is randomised so that many failing workers do not retry
    in lockstep. ``max_attempts=None`` retries forever.
    """

    initial_delay: float = 0.5
    max_delay: float = 300.0
    multiplier: float = 2.0
    jitter: float = 0.5
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.initial_delay < 0 or self.max_delay < self.initial_delay:
            raise ValueError("RetryPolicy needs 0 <= initial_delay <= max_delay")
        if self.multiplier < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("RetryPolicy needs multiplier >= 1 and 0 <= jitter <= 1")

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th consecutive failure (1-based)."""
        exponent = max(failures - 1, 0)
        try:
            grown = self.initial_delay * self.multiplier**exponent
        except OverflowError:  # a float power past 1e308: hours of failures in a row
            grown = self.max_delay
        base = min(self.max_delay, grown)
        return base * (1 - self.jitter) + random.random() * base * self.jitter

    def gives_up_after(self, failures: int) -> bool:
        """True when ``failures`` attempts exhaust the policy."""
        return self.max_attempts is not None and failures >= self.max_attempts
