"""Loading the application a command works on: ``package.module:attribute``."""

from __future__ import annotations

import importlib
import os
import sys

from tidings.context import BoundedContext
from tidings.errors import ConfigurationError


def load_context(spec: str) -> BoundedContext:
    """Import ``module:attribute`` (attribute defaults to ``context``) as a BoundedContext.

    The current directory is importable, as with ``python -m``, so ``tidings relay
    myapp.catalog:context`` works from the project root.
    """
    module_name, _, attribute = spec.partition(":")
    attribute = attribute or "context"
    if not module_name:
        raise ConfigurationError(f"{spec!r} is not MODULE:ATTRIBUTE, e.g. myapp.catalog:context")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigurationError(
                f"cannot import {module_name!r}: run the command from the directory that "
                "contains it, or install it"
            ) from exc
        raise
    try:
        value = getattr(module, attribute)
    except AttributeError as exc:
        raise ConfigurationError(
            f"{module_name} has no attribute {attribute!r}; name the BoundedContext, e.g. "
            f"{module_name}:context"
        ) from exc
    if callable(value) and not isinstance(value, BoundedContext):
        value = value()  # a factory function
    if not isinstance(value, BoundedContext):
        raise ConfigurationError(
            f"{spec} is a {type(value).__name__}, not a tidings.BoundedContext"
        )
    return value
