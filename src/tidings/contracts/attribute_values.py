"""What CloudEvents 1.0 allows as an attribute value: non-empty UTF-8 strings, 32-bit
integers, RFC 3339 times, JSON media types."""

from __future__ import annotations

import re
from datetime import datetime

#: The media type of a JSON payload (a CloudEvent's default ``datacontenttype``).
JSON_CONTENT_TYPE = "application/json"

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def is_text(value: object) -> bool:
    """A non-empty string that UTF-8 can carry."""
    return isinstance(value, str) and value != "" and is_utf8(value)


def is_utf8(value: object) -> bool:
    """A string that UTF-8 can carry (no lone surrogates, which JSON escapes allow)."""
    if not isinstance(value, str):
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_int32(value: object) -> bool:
    """An integer (not a bool) in the signed 32-bit range CloudEvents integers have."""
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and (_INT32_MIN <= value <= _INT32_MAX)
    )


def is_rfc3339(value: object) -> bool:
    """A timestamp string in RFC 3339 form that is also a real date and time."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value.upper())
    except ValueError:
        return False
    return True


def is_json_media_type(content_type: str) -> bool:
    """``application/json`` or any ``+json`` media type, parameters ignored."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == JSON_CONTENT_TYPE or media.endswith("+json")
