"""Loading the application a command works on: ``package.module:attribute``."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from tidings.errors import ConfigurationError

if TYPE_CHECKING:  # imported when a command loads its target, not for --help
    from tidings.context import BoundedContext


def load_context(spec: str) -> BoundedContext:
    """Import ``module:attribute`` (attribute defaults to ``context``) as a BoundedContext.

    The current directory is importable, as with ``python -m``, so ``tidings relay
    myapp.catalog:context`` works from the project root.
    """
    from tidings.context import BoundedContext

    value = _load_attribute(spec, "context")
    if not isinstance(value, BoundedContext):
        raise ConfigurationError(
            f"{spec} is a {type(value).__name__}, not a tidings.BoundedContext"
        )
    return value


def require_current_schema(contexts: Sequence[BoundedContext]) -> None:
    """Refuse (:class:`~tidings.errors.SchemaOutdatedError`, exit 2) a context whose
    database lacks this tidings' tables or has older ones, which the command is about to
    read: a database never initialised ended the command in a "no such table" traceback."""
    from tidings.persistence.migrations import current_version, refuse_outdated

    for context in contexts:
        with context.engine.connect() as connection:
            version = current_version(connection)
        refuse_outdated(version, context.name, "before reading its tidings tables")


def load_contexts(specs: Sequence[str]) -> list[BoundedContext]:
    """The contexts named by several targets, each a BoundedContext or a :class:`System`.

    ``module:attribute`` may name a context, a ``System`` or a factory of either;
    a bare ``module`` takes its ``system`` attribute, else its ``context``. Contexts
    named twice are kept once, in the order first named.
    """
    from tidings.context import BoundedContext
    from tidings.system import System

    contexts: list[BoundedContext] = []
    for spec in specs:
        value = _load_attribute(spec, None)
        if isinstance(value, BoundedContext):
            found = [value]
        elif isinstance(value, System):
            found = list(value)
        else:
            raise ConfigurationError(
                f"{spec} is a {type(value).__name__}, not a tidings.BoundedContext "
                "or tidings.System"
            )
        for context in found:
            if all(context is not known for known in contexts):
                contexts.append(context)
    if not contexts:
        raise ConfigurationError("name at least one context: MODULE:ATTRIBUTE")
    return contexts


def import_target_module(module_name: str) -> ModuleType:
    """Import ``module_name`` with the current directory importable, errors made clear."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigurationError(
                f"cannot import {module_name!r}: run the command from the directory that "
                "contains it, or install it"
            ) from exc
        raise


def _load_attribute(spec: str, default: str | None) -> Any:
    from tidings.context import BoundedContext
    from tidings.system import System

    module_name, _, attribute = spec.partition(":")
    if not module_name:
        raise ConfigurationError(f"{spec!r} is not MODULE:ATTRIBUTE, e.g. myapp.catalog:context")
    module = import_target_module(module_name)
    if not attribute:
        attribute = default or ("system" if hasattr(module, "system") else "context")
    try:
        value = getattr(module, attribute)
    except AttributeError as exc:
        raise ConfigurationError(
            f"{module_name} has no attribute {attribute!r}; name the BoundedContext, e.g. "
            f"{module_name}:context"
        ) from exc
    if callable(value) and not isinstance(value, BoundedContext | System):
        value = value()  # a factory function
    return value
