"""CloudEvents 1.0 codec: structured JSON and binary (headers + body) modes.

Extensions carried by tidings, all lowercase alphanumerics as the spec requires:
``dataversion`` (contract version, integer), ``correlationid`` (the root use case),
``causationid`` (the event that led to this one), ``traceparent`` and ``tracestate``
(W3C trace context, as in the CloudEvents distributed-tracing extension).

Decoding is strict about the envelope and never evaluates anything: JSON only, every
failure raised as :class:`~tidings.errors.DecodeError` (or its subclasses).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tidings.errors import DecodeError, MessageTooLargeError

SPEC_VERSION = "1.0"
JSON_CONTENT_TYPE = "application/json"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
DEFAULT_MAX_BYTES = 1_048_576

_REQUIRED = ("id", "source", "type")
_KNOWN = frozenset(
    {
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "subject",
        "datacontenttype",
        "dataschema",
        "data",
        "data_base64",
        "dataversion",
        "correlationid",
        "causationid",
        "traceparent",
        "tracestate",
    }
)
_OPTIONAL_STRINGS = ("subject", "correlationid", "causationid", "traceparent", "tracestate")


@dataclass(frozen=True, slots=True)
class CloudEvent:
    """One CloudEvent as tidings reads and writes it.

    ``data_json`` is the payload as JSON bytes, exactly as stored in the outbox, so
    encoding never re-serialises a payload; ``data`` is the parsed value on decode.
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


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as CloudEvents producers conventionally write it."""
    return moment.isoformat().replace("+00:00", "Z")


def encode_structured(event: CloudEvent) -> bytes:
    """Structured mode: one JSON object, the payload spliced in without re-encoding."""
    head = json.dumps(event.attributes(), separators=(",", ":"), ensure_ascii=False)
    return b"".join((head[:-1].encode(), b',"data":', event.data_json, b"}"))


def encode_binary(event: CloudEvent, prefix: str = "ce-") -> tuple[dict[str, str], bytes]:
    """Binary mode: attributes as ``prefix``-named headers, the payload as the body."""
    headers = {f"{prefix}{name}": _header_text(value) for name, value in event.attributes().items()}
    content_type = headers.pop(f"{prefix}datacontenttype")
    headers["content-type"] = content_type
    return headers, event.data_json


def decode_structured(body: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> CloudEvent:
    """Read a structured-mode CloudEvent; raises :class:`DecodeError` on anything invalid."""
    _check_size(body, max_bytes)
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise DecodeError(f"not JSON: {_brief(exc)}") from exc
    if not isinstance(document, dict):
        raise DecodeError(
            f"a structured CloudEvent is a JSON object, got {type(document).__name__}"
        )
    if "data_base64" in document:
        raise DecodeError("binary data (data_base64) is not a tidings contract payload")
    data = document.get("data")
    try:
        data_json = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    except (ValueError, RecursionError) as exc:  # pragma: no cover - json.loads output
        raise DecodeError(f"data cannot be re-encoded: {_brief(exc)}") from exc
    return _from_attributes(document, data_json)


def decode_binary(
    headers: Mapping[str, Any],
    body: bytes,
    *,
    prefix: str = "ce-",
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> CloudEvent:
    """Read a binary-mode CloudEvent from headers and body."""
    _check_size(body, max_bytes)
    attributes: dict[str, Any] = {}
    lowered = prefix.lower()
    for name, value in headers.items():
        key = str(name).lower()
        if key.startswith(lowered):
            attributes[key[len(lowered) :]] = _text(value, key)
        elif key == "content-type":
            attributes["datacontenttype"] = _text(value, key)
    try:
        json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise DecodeError(f"body is not JSON: {_brief(exc)}") from exc
    return _from_attributes(attributes, bytes(body))


def _from_attributes(attrs: Mapping[str, Any], data_json: bytes) -> CloudEvent:
    if attrs.get("specversion") != SPEC_VERSION:
        raise DecodeError(f"specversion must be {SPEC_VERSION!r}, got {attrs.get('specversion')!r}")
    for name in _REQUIRED:
        value = attrs.get(name)
        if not isinstance(value, str) or not value:
            raise DecodeError(f"required attribute {name!r} is missing or not a non-empty string")
    content_type = attrs.get("datacontenttype", JSON_CONTENT_TYPE)
    if not isinstance(content_type, str) or not _is_json_media_type(content_type):
        raise DecodeError(f"datacontenttype {content_type!r} is not JSON")
    time = attrs.get("time")
    if time is not None:
        if not isinstance(time, str):
            raise DecodeError("time must be an RFC 3339 string")
        try:
            datetime.fromisoformat(time)
        except ValueError as exc:
            raise DecodeError(f"time {time!r} is not RFC 3339") from exc
    optional: dict[str, str | None] = {}
    for name in _OPTIONAL_STRINGS:
        value = attrs.get(name)
        if value is not None and not isinstance(value, str):
            raise DecodeError(f"attribute {name!r} must be a string")
        optional[name] = value
    extensions = {
        key: value
        for key, value in attrs.items()
        if key not in _KNOWN and isinstance(value, str | int | bool)
    }
    return CloudEvent(
        id=attrs["id"],
        source=attrs["source"],
        type=attrs["type"],
        dataversion=_version(attrs.get("dataversion", 1)),
        time=time,
        datacontenttype=content_type,
        data_json=data_json,
        extensions=extensions,
        **optional,
    )


def _version(value: Any) -> int:
    if isinstance(value, bool):
        raise DecodeError("dataversion must be a positive integer")
    if isinstance(value, str) and value.isdigit() and value.isascii():
        value = int(value)
    if not isinstance(value, int) or value < 1:
        raise DecodeError(f"dataversion must be a positive integer, got {value!r}")
    return value


def _is_json_media_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == JSON_CONTENT_TYPE or media.endswith("+json")


def _check_size(body: bytes | str, max_bytes: int) -> None:
    if len(body) > max_bytes:
        raise MessageTooLargeError(
            f"message of {len(body)} bytes exceeds the {max_bytes}-byte limit"
        )


def _header_text(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _text(value: Any, name: str) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError as exc:
            raise DecodeError(f"header {name!r} is not UTF-8") from exc
    if isinstance(value, str | int):
        return str(value)
    raise DecodeError(f"header {name!r} has an unsupported value type {type(value).__name__}")


def _brief(exc: BaseException) -> str:
    return str(exc)[:200]
