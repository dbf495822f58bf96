"""The CloudEvent type: its attributes, the checks that make it valid by construction,
and the event a decoder builds from the attributes it read.

Extensions carried by tidings, all lowercase alphanumerics as the spec requires:
``dataversion`` (contract version, integer), ``correlationid`` (the root use case),
``causationid`` (the event that led to this one), ``traceparent`` and ``tracestate``
(W3C trace context, as in the CloudEvents distributed-tracing extension).

A :class:`CloudEvent` is valid by construction (invalid attributes raise
:class:`~tidings.errors.ContractError`), so whatever the encoders of
:mod:`tidings.contracts.cloudevents` write, the official CloudEvents SDK reads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, NoReturn

from tidings.contracts.attribute_values import (
    JSON_CONTENT_TYPE,
    is_int32,
    is_json_media_type,
    is_rfc3339,
    is_text,
    is_utf8,
)
from tidings.errors import ContractError, DecodeError

SPEC_VERSION = "1.0"

_ATTRIBUTE_NAME = re.compile(r"[a-z0-9]+")

_REQUIRED = ("id", "source", "type")
#: The optional string attributes, in the order the encoders write them.
OPTIONAL_STRINGS = (
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
        *OPTIONAL_STRINGS,
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
        for name in OPTIONAL_STRINGS:
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
        for name in OPTIONAL_STRINGS:
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


def from_attributes(attrs: Mapping[str, Any], data_json: bytes) -> CloudEvent:
    """The event of the attributes a decoder read (``dataversion`` an integer or its
    digits) and its payload; raises :class:`~tidings.errors.DecodeError` when invalid."""
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
            **{name: attrs.get(name) for name in OPTIONAL_STRINGS},
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


def _invalid(message: str) -> NoReturn:
    raise ContractError(f"invalid CloudEvent: {message}")


def _shown(value: object) -> str:
    return repr(value)[:80]
