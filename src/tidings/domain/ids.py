"""Time-ordered identifiers (UUID version 7 layout), stdlib only.

Python 3.11 has no ``uuid.uuid7``; events need ids that sort by creation time so that
outbox rows, logs and dead letters read naturally, and so that B-tree indexes on event
ids stay append-mostly.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0
# Where time and randomness come from; tidings.testing.deterministic() replaces both.
_clock_ns = time.time_ns
_entropy = os.urandom


def uuid7() -> uuid.UUID:
    """Return a new UUIDv7: 48-bit Unix milliseconds, 12-bit counter, 62 random bits.

    Ids made in the same millisecond by one process still sort in creation order thanks
    to the counter (RFC 9562, method 1), so ordering does not depend on the clock's
    resolution.
    """
    global _last_ms, _counter
    now_ms = _clock_ns() // 1_000_000
    with _lock:
        if now_ms > _last_ms:
            _last_ms = now_ms
            _counter = int.from_bytes(_entropy(2), "big") & 0x3FF
        else:
            _counter += 1
            if _counter > 0xFFF:
                # Counter exhausted within one millisecond: borrow the next one.
                _last_ms += 1
                _counter = 0
        ms, counter = _last_ms, _counter
    rand = int.from_bytes(_entropy(8), "big") & 0x3FFF_FFFF_FFFF_FFFF
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand
    return uuid.UUID(int=value)
