"""The query bus: ``query_bus.ask(GetProductQuery(product_id=...))``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from tidings.application.introspection import handled_types, is_coroutine_handler
from tidings.application.roles import Query
from tidings.errors import ConfigurationError, NoQueryHandlerError

R = TypeVar("R")


class QueryHandlers:
    """The query handlers of one bounded context, one per query class."""

    def __init__(self) -> None:
        self.calls: dict[type, Callable[[Any], Any]] = {}
        self.is_async: dict[type, bool] = {}

    def register(self, handler: object) -> None:
        for query_type in handled_types(handler, Query, "QueryHandler"):
            if query_type in self.calls:
                raise ConfigurationError(
                    f"{query_type.__name__} already has a handler; a query is answered by "
                    "exactly one QueryHandler"
                )
            self.calls[query_type] = handler.handle  # type: ignore[attr-defined]
            self.is_async[query_type] = is_coroutine_handler(handler)


def _missing(query: object) -> NoQueryHandlerError:
    return NoQueryHandlerError(
        f"no QueryHandler answers {type(query).__name__}; register one with "
        "ctx.register_query_handler(handler)"
    )


class QueryBus:
    """Answers queries synchronously by calling the registered handler."""

    __slots__ = ("_calls", "_handlers")

    def __init__(self, handlers: QueryHandlers) -> None:
        self._handlers = handlers
        self._calls = handlers.calls

    def register(self, handler: object) -> None:
        """Register ``handler`` for the query class of its ``handle`` annotation."""
        self._handlers.register(handler)

    def ask(self, query: Query[R]) -> R:
        """Return the answer of the handler registered for ``type(query)``."""
        call = self._calls.get(query.__class__)
        if call is None:
            raise _missing(query)
        if self._handlers.is_async[query.__class__]:
            raise ConfigurationError(
                f"the handler of {type(query).__name__} is async; ask through "
                "ctx.async_query_bus (await bus.ask(query))"
            )
        return call(query)  # type: ignore[no-any-return]


class AsyncQueryBus:
    """The asyncio flavour of :class:`QueryBus`: ``await bus.ask(query)``."""

    __slots__ = ("_calls", "_handlers")

    def __init__(self, handlers: QueryHandlers) -> None:
        self._handlers = handlers
        self._calls = handlers.calls

    def register(self, handler: object) -> None:
        """Register ``handler`` for the query class of its ``handle`` annotation."""
        self._handlers.register(handler)

    async def ask(self, query: Query[R]) -> R:
        """Return (awaiting if needed) the answer of the handler for ``type(query)``."""
        call = self._calls.get(query.__class__)
        if call is None:
            raise _missing(query)
        answer = call(query)
        if inspect.isawaitable(answer):
            answer = await answer
        return answer  # type: ignore[no-any-return]
