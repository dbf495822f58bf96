"""From a delivery's bytes and headers to a CloudEvent, whichever mode was used."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from tidings.contracts.cloud_event import CloudEvent
from tidings.contracts.cloudevents import binary_attributes, decode_binary_body, decode_structured
from tidings.contracts.signing import structured_parts
from tidings.contracts.strict_json import message_text

# Binary-mode attribute prefixes of the CloudEvents protocol bindings tidings speaks:
# HTTP/NATS/Redis/SQLite style, Kafka, and AMQP.
_PREFIXES = ("ce-", "ce_", "cloudEvents:", "cloudEvents_")


def _binary_prefix(headers: Mapping[str, Any]) -> str | None:
    for prefix in _PREFIXES:
        if f"{prefix}specversion" in headers:
            return prefix
    return None


def decode_delivery(
    body: bytes,
    headers: Mapping[str, Any],
    max_bytes: int,
    *,
    attributes: Mapping[str, str] | None = None,
) -> CloudEvent:
    """Decode binary mode when a ``<prefix>specversion`` header is present, else structured.

    ``attributes``: the binary-mode attributes :func:`signed_parts` read already, so that
    the headers are not read twice. Raises :class:`~tidings.errors.DecodeError` (or a
    subclass) for anything invalid.
    """
    prefix = _binary_prefix(headers)
    if prefix is None:
        return decode_structured(body, max_bytes=max_bytes)
    text = message_text(body, max_bytes)
    if attributes is None:
        attributes = binary_attributes(headers, prefix)
    return decode_binary_body(attributes, body, text)


def signed_parts(body: bytes, headers: Mapping[str, Any]) -> tuple[dict[str, str], bytes, bool]:
    """What a signature covers, read without decoding the payload: the attributes as
    strings, the data bytes as sent (see :mod:`tidings.contracts.signing`), and whether
    the message is in binary mode (its attributes can then go to :func:`decode_delivery`).

    Call it after the size check. Raises :class:`~tidings.errors.DecodeError`.
    """
    prefix = _binary_prefix(headers)
    if prefix is not None:
        return binary_attributes(headers, prefix), bytes(body), True
    # the size was checked before
    attributes, data = structured_parts(message_text(body, sys.maxsize))
    return attributes, data, False
