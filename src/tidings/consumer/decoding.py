"""From a delivery's bytes and headers to a CloudEvent, whichever mode was used."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tidings.contracts.cloudevents import (
    CloudEvent,
    binary_attributes,
    decode_binary,
    decode_structured,
)
from tidings.contracts.signing import structured_parts
from tidings.errors import DecodeError

# Binary-mode attribute prefixes of the CloudEvents protocol bindings tidings speaks:
# HTTP/NATS/Redis/SQLite style, Kafka, and AMQP.
_PREFIXES = ("ce-", "ce_", "cloudEvents:", "cloudEvents_")


def _binary_prefix(headers: Mapping[str, Any]) -> str | None:
    for prefix in _PREFIXES:
        if f"{prefix}specversion" in headers:
            return prefix
    return None


def decode_delivery(body: bytes, headers: Mapping[str, Any], max_bytes: int) -> CloudEvent:
    """Decode binary mode when a ``<prefix>specversion`` header is present, else structured.

    Raises :class:`~tidings.errors.DecodeError` (or a subclass) for anything invalid.
    """
    prefix = _binary_prefix(headers)
    if prefix is not None:
        return decode_binary(headers, body, prefix=prefix, max_bytes=max_bytes)
    return decode_structured(body, max_bytes=max_bytes)


def signed_parts(body: bytes, headers: Mapping[str, Any]) -> tuple[dict[str, str], bytes]:
    """What a signature covers, read without decoding the payload: the attributes as
    strings and the data bytes as sent (see :mod:`tidings.contracts.signing`).

    Call it after the size check. Raises :class:`~tidings.errors.DecodeError`.
    """
    prefix = _binary_prefix(headers)
    if prefix is not None:
        return binary_attributes(headers, prefix), bytes(body)
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"message is not UTF-8: {str(exc)[:200]}") from None
    return structured_parts(text)
