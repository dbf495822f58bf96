"""The limits a received message must keep, each checked before the work it protects.

The table in SECURITY.md ("Limits") lists them with the error and dead-letter reason of
each. Sizes are checked before a byte is decoded, attribute counts and lengths while
the headers or the envelope are read, and nesting depth by a scan of the text before
the JSON parser (and later pydantic) walks it.
"""

from __future__ import annotations

import re
from itertools import accumulate

from tidings.errors import LimitExceededError

#: Largest message body accepted, in bytes (``max_message_bytes`` of the consumer).
DEFAULT_MAX_BYTES = 1_048_576
#: Most CloudEvents attributes one message may carry, standard ones included.
MAX_ATTRIBUTES = 64
#: Longest attribute value accepted, in characters.
MAX_ATTRIBUTE_LENGTH = 4096
#: Deepest nesting of arrays and objects in a payload (``data``).
MAX_DEPTH = 64
#: Most events per relay or consumer batch (``batch_size``).
MAX_BATCH_SIZE = 10_000

# JSON strings, whose brackets do not nest; the unrolled form keeps the regex linear.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_CHANGE = {"[": 1, "{": 1, "]": -1, "}": -1}


def check_depth(text: str, limit: int = MAX_DEPTH) -> None:
    """Raise :class:`LimitExceededError` when arrays/objects in ``text`` nest deeper than
    ``limit``. Linear in the text and cheap for ordinary payloads: only text holding more
    brackets than ``limit`` is scanned at all."""
    if text.count("[") + text.count("{") <= limit:
        return
    brackets = _NOT_A_BRACKET.sub("", _JSON_STRING.sub("", text))
    # The running sum of opens (+1) and closes (-1) is the depth at each bracket; map and
    # accumulate keep the walk in C. (Unbalanced text is left to the JSON parser.)
    if max(accumulate(map(_DEPTH_CHANGE.__getitem__, brackets)), default=0) > limit:
        raise LimitExceededError(f"JSON nests arrays/objects deeper than {limit} levels")


def check_attribute(name: str, value: str, count: int) -> None:
    """Raise :class:`LimitExceededError` for the ``count``-th attribute if it breaks a limit."""
    if count > MAX_ATTRIBUTES:
        raise LimitExceededError(f"message carries more than {MAX_ATTRIBUTES} attributes")
    if len(value) > MAX_ATTRIBUTE_LENGTH:
        raise LimitExceededError(
            f"attribute {name[:40]!r} is {len(value)} characters long; the limit is "
            f"{MAX_ATTRIBUTE_LENGTH}"
        )


def check_batch_size(batch_size: int) -> None:
    """Raise ``ValueError`` unless ``1 <= batch_size <= MAX_BATCH_SIZE``."""
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}, got {batch_size}")
