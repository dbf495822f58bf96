"""Reading handled types from ``handle`` annotations, once, at subscription."""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

from tidings.errors import ConfigurationError


def handled_types(handler: object, base: type, role: str) -> tuple[type, ...]:
    """Return the classes ``handler.handle`` accepts, read from its first parameter.

    ``A | B`` (or ``Union[A, B]``) subscribes to both. Every class must derive from
    ``base``; the message of the error says how to fix the signature.
    """
    method = getattr(handler, "handle", None)
    name = type(handler).__qualname__
    if method is None or not callable(method):
        raise ConfigurationError(f"{name} has no handle() method; a {role} needs one")
    parameters = [
        p
        for p in inspect.signature(method).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if not parameters:
        raise ConfigurationError(f"{name}.handle() takes no argument; it must take the message")
    try:
        hints = typing.get_type_hints(method)
    except Exception as exc:  # a forward reference that cannot be resolved
        raise ConfigurationError(
            f"cannot resolve the annotation of {name}.handle(): {exc}; import the message "
            "class in the handler's module"
        ) from exc
    annotation = hints.get(parameters[0].name)
    if annotation is None:
        raise ConfigurationError(
            f"{name}.handle({parameters[0].name}) has no type annotation; annotate it with "
            f"the {base.__name__} subclass it handles, e.g. handle(self, event: ProductPutOnSale)"
        )
    candidates = _union_members(annotation)
    for candidate in candidates:
        if not (isinstance(candidate, type) and issubclass(candidate, base)):
            raise ConfigurationError(
                f"{name}.handle() is annotated with {candidate!r}, which is not a "
                f"{base.__name__} subclass"
            )
    return candidates


def is_coroutine_handler(handler: object) -> bool:
    """True when ``handler.handle`` is an ``async def``."""
    method: Callable[..., Any] = handler.handle  # type: ignore[attr-defined]
    return inspect.iscoroutinefunction(method)


def handler_id(handler: object) -> str:
    """A stable name for a handler, stored with its durable work: module and class."""
    cls = type(handler)
    return f"{cls.__module__}.{cls.__qualname__}"


def _union_members(annotation: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(annotation)
    return (annotation,)
