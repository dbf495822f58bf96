"""CloudEvents 1.0 codec: structured JSON and binary (headers + body) modes.

Extensions carried by tidings, all lowercase alphanumerics as the spec requires:
``dataversion`` (contract version, integer), ``correlationid`` (the root use case),
``causationid`` (the event that led to this one), ``traceparent`` and ``tracestate``
(W3C trace context, as in the CloudEvents distributed-tracing extension).

A :class:`CloudEvent` is valid by construction (invalid attributes raise
:class:`~tidings.errors.ContractError`), so whatever the encoders write, the official
CloudEvents SDK reads. Decoding is strict about the envelope and never evaluates
anything: JSON only, every failure raised as :class:`~tidings.errors.DecodeError` (or
one of its subclasses), within the limits of :mod:`tidings.contracts.limits`.

Binary mode carries every attribute as its canonical string, so a custom extension
written as an integer or boolean is read back as a string (``"3"``, ``"true"``);
tidings' own ``dataversion`` is read back as an integer. Structured mode reads the
payload back as the same JSON value in compact form (outbox payloads already are).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, NoReturn
from urllib.parse import quote, unquote

from tidings.contracts.attribute_values import JSON_CONTENT_TYPE as JSON_CONTENT_TYPE
from tidings.contracts.attribute_values import (
    is_int32,
    is_json_media_type,
    is_rfc3339,
    is_text,
    is_utf8,
)
from tidings.contracts.limits import DEFAULT_MAX_BYTES as DEFAULT_MAX_BYTES
from tidings.contracts.limits import (
    MAX_ATTRIBUTE_LENGTH,
    MAX_ATTRIBUTES,
    MAX_DEPTH,
    check_attribute,
    check_depth,
)
from tidings.contracts.strict_json import brief, loads_strict, message_text
from tidings.errors import ContractError, DecodeError

SPEC_VERSION = "1.0"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"

_ATTRIBUTE_NAME = re.compile(r"[a-z0-9]+")
# CloudEvents HTTP binding 3.1.3.2: printable ASCII except space, '"' and '%' go as is.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in ' "%')

_REQUIRED = ("id", "source", "type")
_OPTIONAL_STRINGS = (
    "subject",
    "dataschema",
    "correlationid",
    "causationid",
    "traceparent",
    "tracestate",
)
_KNOWN = frozenset(
    {
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "datacontenttype",
        "data",
        "data_base64",
        "dataversion",
        *_OPTIONAL_STRINGS,
    }
)


@dataclass(frozen=True, slots=True)
class CloudEvent:
    """One CloudEvent as tidings reads and writes it.

    ``data_json`` is the payload as JSON bytes, exactly as stored in the outbox, so
    encoding never re-serialises a payload; ``data`` is the parsed value on decode.
    ``extensions`` holds any further extension attributes: lowercase alphanumeric
    names, string, integer (32-bit) or boolean values.

    Raises :class:`~tidings.errors.ContractError` when an attribute breaks the
    CloudEvents 1.0 rules, so an invalid event can never be sent.
    """

    id: str
    source: str
    type: str
    dataversion: int = 1
    time: str | None = None
    subject: str | None = None
    datacontenttype: str = JSON_CONTENT_TYPE
    correlationid: str | None = None
    causationid: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    data_json: bytes = b"null"
    extensions: Mapping[str, str | int | bool] = field(default_factory=dict)
    dataschema: str | None = None

    def __post_init__(self) -> None:
        for name in _REQUIRED:
            if not is_text(getattr(self, name)):
                _invalid(f"required attribute {name!r} must be a non-empty UTF-8 string")
        for name in _OPTIONAL_STRINGS:
            value = getattr(self, name)
            if value is not None and not is_text(value):
                _invalid(f"attribute {name!r} must be absent or a non-empty UTF-8 string")
        if not is_text(self.datacontenttype) or not is_json_media_type(self.datacontenttype):
            _invalid(f"datacontenttype {_shown(self.datacontenttype)} is not a JSON media type")
        if self.time is not None and not is_rfc3339(self.time):
            _invalid(f"time {_shown(self.time)} is not an RFC 3339 timestamp with an offset")
        if not is_int32(self.dataversion) or self.dataversion < 1:
            version = _shown(self.dataversion)
            _invalid(f"dataversion must be a positive 32-bit integer, got {version}")
        if not isinstance(self.data_json, bytes) or not self.data_json or self.data_json.isspace():
            _invalid("data_json must be JSON text as bytes (b'null' for no data)")
        for name, value in self.extensions.items():
            if not isinstance(name, str) or not _ATTRIBUTE_NAME.fullmatch(name):
                _invalid(f"extension name {_shown(name)} is not lowercase ASCII letters and digits")
            if name in _KNOWN:
                _invalid(f"extension name {name!r} is reserved for a CloudEvents attribute")
            if not (isinstance(value, bool) or is_int32(value) or is_utf8(value)):
                _invalid(
                    f"extension {name!r} must be a UTF-8 string, 32-bit integer or boolean, "
                    f"got {type(value).__name__}"
                )

    @classmethod
    def trusted(cls, **attributes: Any) -> CloudEvent:
        """Build an event from attributes tidings wrote itself (an outbox row), without
        checking them again: they were valid when published, and the relay builds one
        event per row, where re-checking costs as much as publishing."""
        event = object.__new__(cls)
        for name, value in {**_DEFAULTS, **attributes}.items():
            _set(event, name, value)
        return event

    def with_extensions(self, **extensions: str | int | bool) -> CloudEvent:
        """A copy with ``extensions`` added, not checked again: for attributes tidings
        computes itself (the signature), where re-checking would double the cost."""
        copy = object.__new__(CloudEvent)
        for name in _FIELD_NAMES:
            _set(copy, name, getattr(self, name))
        _set(copy, "extensions", {**self.extensions, **extensions})
        return copy

    @property
    def data(self) -> Any:
        """The payload, parsed."""
        return json.loads(self.data_json)

    def attributes(self) -> dict[str, str | int | bool]:
        """Every context attribute except ``data``, omitting absent optional ones."""
        attrs: dict[str, str | int | bool] = {
            "specversion": SPEC_VERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
        }
        if self.time is not None:
            attrs["time"] = self.time
        attrs["datacontenttype"] = self.datacontenttype
        attrs["dataversion"] = self.dataversion
        for name in _OPTIONAL_STRINGS:
            value = getattr(self, name)
            if value is not None:
                attrs[name] = value
        attrs.update(self.extensions)
        return attrs


_set = object.__setattr__
_NO_EXTENSIONS: Mapping[str, str | int | bool] = MappingProxyType({})
# Field defaults for CloudEvent.trusted; the three required attributes have none.
_DEFAULTS: dict[str, Any] = {
    f.name: _NO_EXTENSIONS
    if f.name == "extensions"
    else (None if f.default is MISSING else f.default)
    for f in fields(CloudEvent)
}
_FIELD_NAMES = tuple(_DEFAULTS)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``; a naive datetime is taken as UTC (as stored)."""
    if moment.tzinfo is not UTC:
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.isoformat().replace("+00:00", "Z")


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
    for name in _OPTIONAL_STRINGS:
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
    return _from_attributes(document, data_json)


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
        return _from_attributes(attributes, b"null")
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
            return _from_attributes(attributes, body.encode("utf-8"))
        except UnicodeEncodeError:
            raise DecodeError("body is not UTF-8 text (lone surrogate)") from None
    return _from_attributes(attributes, bytes(body))


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


def _from_attributes(attrs: Mapping[str, Any], data_json: bytes) -> CloudEvent:
    if attrs.get("specversion") != SPEC_VERSION:
        raise DecodeError(
            f"specversion must be {SPEC_VERSION!r}, got {_shown(attrs.get('specversion'))}"
        )
    content_type = attrs.get("datacontenttype")
    dataversion = attrs.get("dataversion")
    extensions = {
        name: value for name, value in attrs.items() if name not in _KNOWN and value is not None
    }
    try:
        return CloudEvent(
            id=attrs.get("id", ""),
            source=attrs.get("source", ""),
            type=attrs.get("type", ""),
            dataversion=1 if dataversion is None else _version(dataversion),
            time=attrs.get("time"),
            datacontenttype=JSON_CONTENT_TYPE if content_type is None else content_type,
            data_json=data_json,
            extensions=extensions,
            **{name: attrs.get(name) for name in _OPTIONAL_STRINGS},
        )
    except ContractError as exc:
        raise DecodeError(str(exc)) from None


def _version(value: Any) -> int:
    """``dataversion`` as JSON carries it (integer) or as headers carry it (digits)."""
    if isinstance(value, str) and 0 < len(value) <= 10 and value.isascii() and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise DecodeError(f"dataversion must be a positive integer, got {_shown(value)}")


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


def _invalid(message: str) -> NoReturn:
    raise ContractError(f"invalid CloudEvent: {message}")


def _shown(value: object) -> str:
    return repr(value)[:80]
