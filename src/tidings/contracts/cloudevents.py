"""CloudEvents 1.0 codec: structured JSON and binary (headers + body) modes.

The event itself, and the checks that make it valid, are in
:mod:`tidings.contracts.cloud_event`; :class:`CloudEvent` is importable from here too.
Decoding is strict about the envelope and never evaluates anything: JSON only, every
failure raised as :class:`~tidings.errors.DecodeError` (or one of its subclasses),
within the limits of :mod:`tidings.contracts.limits`.

Binary mode carries every attribute as its canonical string, so a custom extension
written as an integer or boolean is read back as a string (``"3"``, ``"true"``);
tidings' own ``dataversion`` is read back as an integer. Structured mode reads the
payload back as the same JSON value in compact form (outbox payloads already are).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote

from tidings.contracts.attribute_values import JSON_CONTENT_TYPE
from tidings.contracts.cloud_event import (
    OPTIONAL_STRINGS,
    SPEC_VERSION,
    CloudEvent,
    format_time,
    from_attributes,
)
from tidings.contracts.limits import (
    DEFAULT_MAX_BYTES,
    MAX_ATTRIBUTE_LENGTH,
    MAX_ATTRIBUTES,
    MAX_DEPTH,
    check_attribute,
    check_depth,
)
from tidings.contracts.strict_json import brief, loads_strict, message_text
from tidings.errors import DecodeError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "JSON_CONTENT_TYPE",
    "SPEC_VERSION",
    "STRUCTURED_CONTENT_TYPE",
    "CloudEvent",
    "binary_attributes",
    "decode_binary",
    "decode_binary_body",
    "decode_structured",
    "encode_binary",
    "encode_structured",
    "format_time",
]

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"

# CloudEvents HTTP binding 3.1.3.2: printable ASCII except space, '"' and '%' go as is.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in ' "%')


# Built once: json.dumps with any non-default option constructs a new encoder per call,
# which costs more than encoding a CloudEvent's attributes.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_structured(event: CloudEvent) -> bytes:
    """Structured mode: one JSON object, the payload spliced in without re-encoding."""
    head = _COMPACT_JSON.encode(event.attributes())
    return b"".join((head[:-1].encode(), b',"data":', event.data_json, b"}"))


def encode_binary(
    event: CloudEvent, prefix: str = "ce-", *, percent_encode: bool = False
) -> tuple[dict[str, str], bytes]:
    """Binary mode: attributes as ``prefix``-named headers, the payload as the body.

    Header values are the attributes' canonical strings, UTF-8 as broker bindings
    (Kafka, AMQP, NATS) carry them. Pass ``percent_encode=True`` for the HTTP binding,
    which percent-encodes space, ``"``, ``%`` and anything outside printable ASCII.
    """
    if percent_encode:
        headers = {
            f"{prefix}{name}": quote(_header_text(value), safe=_HEADER_SAFE)
            for name, value in event.attributes().items()
            if name != "datacontenttype"
        }
        headers["content-type"] = event.datacontenttype
        return headers, event.data_json
    # The relay's hot path: the same headers as above, built without intermediates.
    headers = {
        f"{prefix}specversion": SPEC_VERSION,
        f"{prefix}id": event.id,
        f"{prefix}source": event.source,
        f"{prefix}type": event.type,
    }
    if event.time is not None:
        headers[f"{prefix}time"] = event.time
    headers[f"{prefix}dataversion"] = str(event.dataversion)
    for name in OPTIONAL_STRINGS:
        value = getattr(event, name)
        if value is not None:
            headers[prefix + name] = value
    for name, extension in event.extensions.items():
        headers[prefix + name] = _header_text(extension)
    headers["content-type"] = event.datacontenttype
    return headers, event.data_json


def decode_structured(body: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> CloudEvent:
    """Read a structured-mode CloudEvent; raises :class:`DecodeError` on anything invalid."""
    text = message_text(body, max_bytes)
    check_depth(text, MAX_DEPTH + 1)  # the envelope is one level
    try:
        document = loads_strict(text)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"not JSON: {brief(exc)}") from None
    if not isinstance(document, dict):
        raise DecodeError(
            f"a structured CloudEvent is a JSON object, got {type(document).__name__}"
        )
    attribute_count = len(document) - ("data" in document)
    for name, value in document.items():
        if name != "data" and isinstance(value, str):
            check_attribute(name, value, attribute_count)
    if attribute_count > MAX_ATTRIBUTES:
        check_attribute("", "", attribute_count)
    if "data_base64" in document:
        raise DecodeError("binary data (data_base64) is not a tidings contract payload")
    try:
        data_json = json.dumps(
            document.get("data"), separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"data cannot be re-encoded as UTF-8 JSON: {brief(exc)}") from None
    return from_attributes(document, data_json)


def decode_binary(
    headers: Mapping[str, Any],
    body: bytes,
    *,
    prefix: str = "ce-",
    max_bytes: int = DEFAULT_MAX_BYTES,
    percent_decode: bool = False,
) -> CloudEvent:
    """Read a binary-mode CloudEvent from headers and body.

    Header values may be ``str``, UTF-8 ``bytes``, integers, booleans or datetimes (as
    AMQP carries them); ``None`` counts as absent. An empty body means no data. Pass
    ``percent_decode=True`` for the HTTP binding (see :func:`encode_binary`).
    """
    text = message_text(body, max_bytes)
    return decode_binary_body(
        binary_attributes(headers, prefix, percent_decode=percent_decode), body, text
    )


def decode_binary_body(attributes: Mapping[str, str], body: bytes | str, text: str) -> CloudEvent:
    """The event of attributes read by :func:`binary_attributes` and a body already
    size-checked and read as ``text``: the second half of :func:`decode_binary`, for a
    caller that read the headers first (to check a signature)."""
    if not text.strip():
        return from_attributes(attributes, b"null")
    check_depth(text)
    try:
        data = loads_strict(text)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"body is not JSON: {brief(exc)}") from None
    if "\\u" in text:
        # A JSON escape can spell a lone surrogate, which no UTF-8 payload holds: refused
        # here as structured mode refuses it, so every event decoded re-encodes.
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise DecodeError("body escapes a lone surrogate, which UTF-8 cannot carry") from None
    if isinstance(body, str):
        try:
            return from_attributes(attributes, body.encode("utf-8"))
        except UnicodeEncodeError:
            raise DecodeError("body is not UTF-8 text (lone surrogate)") from None
    return from_attributes(attributes, bytes(body))


def binary_attributes(
    headers: Mapping[str, Any], prefix: str = "ce-", *, percent_decode: bool = False
) -> dict[str, str]:
    """The attributes binary-mode ``headers`` carry, each as its string (``content-type``
    as ``datacontenttype``); names are matched and returned in lowercase.

    Raises :class:`DecodeError` for a header that is not text, and
    :class:`~tidings.errors.LimitExceededError` past the attribute limits, which are
    checked as the headers are read.
    """
    if not isinstance(headers, Mapping):
        raise DecodeError(f"headers must be a mapping, got {type(headers).__name__}")
    attributes: dict[str, str] = {}
    lowered = prefix.lower()
    skip = len(lowered)
    # Per header of every delivery: plain str names and values take the short way.
    for raw_name, value in headers.items():
        if type(raw_name) is not str:
            if isinstance(raw_name, bytes | bytearray):
                raw_name = bytes(raw_name).decode("utf-8", "replace")
            elif not isinstance(raw_name, str):
                continue
        if value is None:
            continue
        key = raw_name.lower()
        if key.startswith(lowered):
            if type(value) is not str:
                value = _text(value, raw_name)
            if percent_decode:
                value = _percent_decoded(value, raw_name)
            name = key[skip:]
        elif key == "content-type":
            value = value if type(value) is str else _text(value, raw_name)
            name = "datacontenttype"
        else:
            continue
        if len(value) > MAX_ATTRIBUTE_LENGTH or len(attributes) >= MAX_ATTRIBUTES:
            check_attribute(name, value, len(attributes) + 1)  # raises
        attributes[name] = value
    return attributes


def _header_text(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _text(value: object, name: str) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError(f"header {name!r} is not UTF-8") from None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int):
        return _header_text(value)
    if isinstance(value, datetime):
        try:
            return format_time(value)
        except OverflowError:
            raise DecodeError(f"header {name!r} is a time out of range in UTC") from None
    raise DecodeError(f"header {name!r} has an unsupported value type {type(value).__name__}")


def _percent_decoded(value: str, name: str) -> str:
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise DecodeError(f"header {name!r} percent-encodes bytes that are not UTF-8") from None
