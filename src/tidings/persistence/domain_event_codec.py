"""JSON for domain events stored in the publication log (durable after-commit work).

Domain events are plain frozen dataclasses; the converters for each class are built
once from its type hints, so encoding an event does no per-event reflection. Only
classes the context's handlers subscribe to are ever decoded: the stored type name
is looked up, never imported or evaluated.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from tidings.domain.events import DomainEvent
from tidings.errors import ConfigurationError

Convert = Callable[[Any], Any]


def _identity(value: Any) -> Any:
    return value


def _scalar(kind: type) -> tuple[Convert, Convert] | None:
    if kind in (str, int, float, bool, type(None), Any):
        return _identity, _identity
    if kind is UUID:
        return str, UUID
    if kind is datetime:
        return datetime.isoformat, datetime.fromisoformat
    if kind is date:
        return date.isoformat, date.fromisoformat
    if kind is Decimal:
        return str, Decimal
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return (lambda member: member.value), kind
    return None


def converters(hint: Any, owner: str) -> tuple[Convert, Convert]:
    """(encode, decode) functions for values of type ``hint``."""
    if hint is Any or isinstance(hint, type):
        scalar = _scalar(hint)
        if scalar is not None:
            return scalar
        if dataclasses.is_dataclass(hint):
            return _record_converters(hint)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            encode, decode = converters(options[0], owner)
            return (
                lambda v: None if v is None else encode(v),
                lambda v: None if v is None else decode(v),
            )
    if origin in (list, tuple, set, frozenset) and args:
        item = args[0]
        homogeneous = len(args) == 2 and args[1] is Ellipsis
        if origin is tuple and not homogeneous and len(set(args)) != 1:
            raise _unsupported(hint, owner)
        encode, decode = converters(item, owner)
        build = origin
        return (lambda v: [encode(i) for i in v], lambda v: build(decode(i) for i in v))
    if origin in (dict, Mapping) and len(args) == 2 and args[0] is str:
        encode, decode = converters(args[1], owner)
        return (
            lambda v: {k: encode(i) for k, i in v.items()},
            lambda v: {k: decode(i) for k, i in v.items()},
        )
    raise _unsupported(hint, owner)


def _unsupported(hint: Any, owner: str) -> ConfigurationError:
    return ConfigurationError(
        f"{owner}: a field of type {hint!r} cannot be stored for after-commit handlers; "
        "use str, int, float, bool, Decimal, UUID, date, datetime, enums, dataclasses, "
        "or lists, tuples and dicts of those"
    )


def _record_converters(cls: type) -> tuple[Convert, Convert]:
    hints = typing.get_type_hints(cls)
    fields = [
        (f.name, *converters(hints[f.name], cls.__qualname__)) for f in dataclasses.fields(cls)
    ]

    def encode(value: Any) -> dict[str, Any]:
        return {name: enc(getattr(value, name)) for name, enc, _ in fields}

    def decode(data: dict[str, Any]) -> Any:
        return cls(**{name: dec(data[name]) for name, _, dec in fields if name in data})

    return encode, decode


class DomainEventCodec:
    """Encodes domain events to JSON text and back, for the classes it was told about."""

    def __init__(self) -> None:
        self._by_name: dict[str, type[DomainEvent]] = {}
        self._converters: dict[type, tuple[Convert, Convert]] = {}

    @staticmethod
    def type_name(cls: type) -> str:
        return f"{cls.__module__}.{cls.__qualname__}"

    def _converters_for(self, cls: type[DomainEvent]) -> tuple[Convert, Convert]:
        pair = self._converters.get(cls)
        if pair is None:
            pair = _record_converters(cls)
            self._converters[cls] = pair
            self._by_name[self.type_name(cls)] = cls
        return pair

    def encode(self, event: DomainEvent) -> str:
        encode, _ = self._converters_for(type(event))
        return json.dumps(encode(event), separators=(",", ":"))

    def decode(self, type_name: str, payload: str, candidates: tuple[type, ...]) -> DomainEvent:
        """Rebuild an event whose class is ``type_name``, among ``candidates`` and subclasses."""
        cls = self._by_name.get(type_name) or _find_class(type_name, candidates)
        if cls is None:
            raise ConfigurationError(
                f"stored after-commit work names {type_name}, which is not a subclass of "
                f"{', '.join(c.__name__ for c in candidates)}; was the event class renamed?"
            )
        _, decode = self._converters_for(cls)
        return decode(json.loads(payload))  # type: ignore[no-any-return]


def _find_class(type_name: str, candidates: tuple[type, ...]) -> type[DomainEvent] | None:
    pending = list(candidates)
    while pending:
        cls = pending.pop()
        if DomainEventCodec.type_name(cls) == type_name:
            return cls
        pending.extend(cls.__subclasses__())
    return None
