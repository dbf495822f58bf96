"""A system: the bounded contexts that talk to each other, named once for the commands.

Commands that look across contexts (``tidings trace``, ``tidings map``, ``tidings
contracts``, ``tidings asyncapi``) take either several ``APP`` targets or one target
naming a :class:`System`::

    # myshop/system.py
    from tidings import System
    from myshop import basket, catalog

    system = System("myshop", [catalog.context, basket.context])

    $ tidings map myshop.system:system
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from tidings.context import BoundedContext
from tidings.errors import ConfigurationError


class System:
    """A named, ordered set of bounded contexts with distinct names.

    :param name: what the system is called in maps, traces and AsyncAPI documents.
    :param contexts: its bounded contexts; two contexts may not share a name.
    """

    def __init__(self, name: str, contexts: Iterable[BoundedContext]) -> None:
        self.name = name
        self.contexts: tuple[BoundedContext, ...] = tuple(contexts)
        seen: set[str] = set()
        for context in self.contexts:
            if not isinstance(context, BoundedContext):
                raise ConfigurationError(
                    f"System {name!r} holds a {type(context).__name__}; "
                    "give it tidings.BoundedContext objects"
                )
            if context.name in seen:
                raise ConfigurationError(
                    f"System {name!r} has two contexts named {context.name!r}; "
                    "context names must be unique within a system"
                )
            seen.add(context.name)

    def __iter__(self) -> Iterator[BoundedContext]:
        return iter(self.contexts)

    def __len__(self) -> int:
        return len(self.contexts)

    def context(self, name: str) -> BoundedContext:
        """The context called ``name``; a :class:`ConfigurationError` names the others."""
        for context in self.contexts:
            if context.name == name:
                return context
        known = ", ".join(c.name for c in self.contexts)
        raise ConfigurationError(f"System {self.name!r} has no context {name!r} (it has {known})")

    def __repr__(self) -> str:
        return f"System({self.name!r}, [{', '.join(c.name for c in self.contexts)}])"
