"""From a delivery's bytes and headers to a CloudEvent, whichever mode was used."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tidings.contracts.cloudevents import CloudEvent, decode_binary, decode_structured

# Binary-mode attribute prefixes of the CloudEvents protocol bindings tidings speaks:
# HTTP/NATS/Redis/SQLite style, Kafka, and AMQP.
_PREFIXES = ("ce-", "ce_", "cloudEvents:", "cloudEvents_")


def decode_delivery(body: bytes, headers: Mapping[str, Any], max_bytes: int) -> CloudEvent:
    """Decode binary mode when a ``<prefix>specversion`` header is present, else structured.

    Raises :class:`~tidings.errors.DecodeError` (or a subclass) for anything invalid.
    """
    for prefix in _PREFIXES:
        if f"{prefix}specversion" in headers:
            return decode_binary(headers, body, prefix=prefix, max_bytes=max_bytes)
    return decode_structured(body, max_bytes=max_bytes)
