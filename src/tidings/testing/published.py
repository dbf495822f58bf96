"""What a use case published: the integration events in a context's outbox, as contracts.

::

    with catalog.transaction():
        PutProductOnSale(repository, catalog.domain_events).execute("p-1")

    events = published(catalog)
    events.assert_published(ProductUpdatedIntegrationEvent, product_id="p-1")
    events.assert_nothing_else()

The outbox is read as the relay reads it, so what the assertions see is what other
contexts would receive. Rows already relayed and deleted are gone; ``since=`` takes a
:func:`outbox_mark` to look only at what was published after it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, overload

from sqlalchemy import func, select

from tidings.contracts.envelope import cloud_event_from_row, to_contract
from tidings.contracts.integration_event import IntegrationEvent
from tidings.contracts.registry import ContractRegistry, default_registry
from tidings.persistence.tables import outbox

if TYPE_CHECKING:
    from tidings.context import BoundedContext


class PublishedEvents(Sequence[IntegrationEvent]):
    """Integration events in publication order, with assertions that explain failures."""

    def __init__(self, context_name: str, events: Sequence[IntegrationEvent]) -> None:
        self.context_name = context_name
        self._events = list(events)
        self._checked: set[int] = set()

    @overload
    def __getitem__(self, index: int) -> IntegrationEvent: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[IntegrationEvent]: ...
    def __getitem__(self, index: int | slice) -> IntegrationEvent | Sequence[IntegrationEvent]:
        return self._events[index]

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[IntegrationEvent]:
        return iter(self._events)

    def of(self, contract: type[IntegrationEvent], **fields: Any) -> list[IntegrationEvent]:
        """The events of ``contract`` whose fields equal ``fields``."""
        return [
            event for event in self._events if type(event) is contract and _matches(event, fields)
        ]

    def assert_published(
        self, contract: type[IntegrationEvent], *, times: int = 1, **fields: Any
    ) -> list[IntegrationEvent]:
        """Assert that ``contract`` with these field values was published ``times`` times.

        Returns the matching events. The message lists what was published instead.
        """
        found = self.of(contract, **fields)
        if len(found) != times:
            wanted = f"{contract.__name__}({_describe(fields)})"
            raise AssertionError(
                f"expected {wanted} published {times} time(s) by {self.context_name}, "
                f"found {len(found)}; published: {self._summary()}"
            )
        self._checked.update(id(event) for event in found)
        return found

    def assert_nothing_else(self) -> None:
        """Assert that every published event was matched by an ``assert_published``."""
        rest = [event for event in self._events if id(event) not in self._checked]
        if rest:
            raise AssertionError(
                f"{self.context_name} also published: " + ", ".join(_show(event) for event in rest)
            )

    def assert_nothing_published(self) -> None:
        """Assert that no integration event was published at all."""
        if self._events:
            raise AssertionError(f"{self.context_name} published: {self._summary()}")

    def _summary(self) -> str:
        return ", ".join(_show(event) for event in self._events) or "nothing"


def outbox_mark(context: BoundedContext) -> int:
    """The outbox's last position now: pass it as ``since=`` to see only later events."""
    with context.engine.connect() as connection:
        return int(connection.execute(select(func.max(outbox.c.position))).scalar() or 0)


def published(
    context: BoundedContext,
    *,
    since: int = 0,
    registry: ContractRegistry = default_registry,
) -> PublishedEvents:
    """The integration events in ``context``'s outbox (after position ``since``)."""
    query = select(outbox).where(outbox.c.position > since).order_by(outbox.c.position)
    with context.engine.connect() as connection:
        rows = connection.execute(query).mappings().all()
    events = [to_contract(cloud_event_from_row(row), registry) for row in rows]
    return PublishedEvents(context.name, events)


def assert_published(
    context: BoundedContext, contract: type[IntegrationEvent], *, times: int = 1, **fields: Any
) -> list[IntegrationEvent]:
    """Shorthand for ``published(context).assert_published(contract, ...)``."""
    return published(context).assert_published(contract, times=times, **fields)


def assert_nothing_published(context: BoundedContext) -> None:
    """Shorthand for ``published(context).assert_nothing_published()``."""
    published(context).assert_nothing_published()


def _matches(event: IntegrationEvent, fields: dict[str, Any]) -> bool:
    return all(getattr(event, name, _MISSING) == value for name, value in fields.items())


def _describe(fields: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in fields.items())


def _show(event: IntegrationEvent) -> str:
    shown = event.model_dump(exclude={"event_id", "occurred_at"})
    return f"{type(event).__name__}({_describe(shown)})"


_MISSING = object()
