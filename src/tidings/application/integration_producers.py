"""Publishing integration events: a row in the outbox, in the current transaction.

The articles publish an integration event from a domain event handler, never from the
use case ("publishing both from the use case" is their mistake: the use case would
then know what other contexts need). A publish made while no handler runs (no domain
event being handled, no integration event or after-commit handler running) is
reported: a :class:`~tidings.errors.PublishedFromUseCaseWarning` by default, a
:class:`~tidings.errors.PublishedFromUseCaseError` when the context was created with
``strict_publishing=True``. The check reads two attributes of the unit of work that is
looked up anyway, so it costs nothing measurable.
"""

from __future__ import annotations

import warnings
from contextvars import ContextVar
from datetime import UTC, datetime

from tidings.application.unit_of_work import UnitOfWork
from tidings.contracts.envelope import outbox_row
from tidings.contracts.integration_event import IntegrationEvent
from tidings.errors import (
    NoActiveTransactionError,
    PublishedFromUseCaseError,
    PublishedFromUseCaseWarning,
)
from tidings.observability.tracing import create_span


class _OutboxProducer:
    __slots__ = ("_current", "_source", "_strict", "_system")

    def __init__(
        self,
        source: str,
        current: ContextVar[UnitOfWork | None],
        system: str = "tidings",
        *,
        strict: bool = False,
    ) -> None:
        self._source = source
        self._current = current
        self._system = system  # messaging.system of the create spans: the broker's kind
        self._strict = strict

    def _add(self, event: IntegrationEvent, partition_key: str | None) -> None:
        # The wrong kind of event is a bug whether or not a transaction is open: say so first.
        if not isinstance(event, IntegrationEvent):
            raise TypeError(
                f"{type(event).__name__} is not an IntegrationEvent; domain events are "
                "published through DomainEventProducer, and a domain event handler "
                "publishes the integration event that other contexts need"
            )
        uow = self._current.get()
        if uow is None:
            raise NoActiveTransactionError(
                f"{type(event).__name__} was published outside a transaction; integration "
                f"events are written to the outbox atomically with your changes: wrap the "
                f"use case in `with ctx.transaction():` (or `async with`)"
            )
        if uow.cause is None and not uow.in_handler:
            _published_from_use_case(event, self._strict)
        # The create span (when tracing) is a child of the caller's span; its context
        # travels with the event, so the consumer's process span continues this trace.
        parent, state = create_span(self._system, event, uow.correlation_id)
        uow.outbox.append(
            outbox_row(
                event,
                source=self._source,
                correlation_id=uow.correlation_id,
                causation_id=uow.causation_id,
                trigger_id=uow.trigger_id,
                created_at=datetime.now(UTC),
                partition_key=partition_key,
                traceparent=parent,
                tracestate=state,
            )
        )


def _published_from_use_case(event: IntegrationEvent, strict: bool) -> None:
    message = (
        f"{type(event).__name__} was published directly by the use case, not by an event "
        "handler: publish it from a domain event handler (e.g. Publish"
        f"{type(event).__name__}On<YourDomainEvent>) so the use case does not know what "
        "other contexts need"
    )
    if strict:
        raise PublishedFromUseCaseError(message)
    # stacklevel 4: this function, _add, publish, then the caller of publish.
    warnings.warn(message, PublishedFromUseCaseWarning, stacklevel=4)


class IntegrationEventProducer(_OutboxProducer):
    """Writes integration events to the outbox of the current transaction.

    Nothing leaves the process here: the row commits or rolls back with the
    aggregate change that caused it, and the relay forwards it to the broker later.
    Publishing outside ``with ctx.transaction():`` is an error, because that would
    lose the atomicity the outbox exists for.
    """

    __slots__ = ()

    def publish(self, event: IntegrationEvent, *, partition_key: str | None = None) -> None:
        """Add ``event`` to the outbox; ``partition_key`` overrides the contract's key."""
        self._add(event, partition_key)


class AsyncIntegrationEventProducer(_OutboxProducer):
    """The asyncio flavour: ``await producer.publish(event)``; no I/O until commit."""

    __slots__ = ()

    async def publish(self, event: IntegrationEvent, *, partition_key: str | None = None) -> None:
        """Add ``event`` to the outbox; ``partition_key`` overrides the contract's key."""
        self._add(event, partition_key)
