"""Reading a message body: its size limit, UTF-8, and strict JSON (no ``NaN`` or
``Infinity``, no float out of range), every failure a :class:`~tidings.errors.DecodeError`."""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

from tidings.contracts.limits import DEFAULT_MAX_BYTES
from tidings.errors import DecodeError, MessageTooLargeError


def loads_strict(text: str) -> Any:
    """Strict JSON: no ``NaN``/``Infinity`` and no numbers too large for a float."""
    return _STRICT_JSON.decode(text)


def _reject_constant(name: str) -> NoReturn:
    raise DecodeError(f"{name} is not JSON")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise DecodeError(f"number {literal[:40]!r} is out of range")
    return value


# Built once, like _COMPACT_JSON: json.loads with hooks constructs a decoder per call.
_STRICT_JSON = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def message_text(body: object, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """The message as text, after the size limit; raises :class:`DecodeError`."""
    if isinstance(body, str):
        _check_size(len(body) if len(body) * 4 <= max_bytes else _utf8_length(body), max_bytes)
        return body
    if not isinstance(body, bytes | bytearray | memoryview):
        raise DecodeError(f"a message body is bytes or str, got {type(body).__name__}")
    raw = bytes(body)
    _check_size(len(raw), max_bytes)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"message is not UTF-8: {brief(exc)}") from None


def _check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise MessageTooLargeError(f"message of {size} bytes exceeds the {max_bytes}-byte limit")


def _utf8_length(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def brief(exc: BaseException) -> str:
    """An exception's message, cut short for an error that quotes it."""
    return str(exc)[:200]
