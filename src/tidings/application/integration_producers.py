"""Publishing integration events: a row in the outbox, in the current transaction."""

from __future__ import annotations

from contextvars import ContextVar
from datetime import UTC, datetime

from tidings.application.unit_of_work import UnitOfWork
from tidings.contracts.envelope import outbox_row
from tidings.contracts.integration_event import IntegrationEvent
from tidings.errors import NoActiveTransactionError
from tidings.observability.tracing import create_span


class _OutboxProducer:
    __slots__ = ("_current", "_source", "_system")

    def __init__(
        self, source: str, current: ContextVar[UnitOfWork | None], system: str = "tidings"
    ) -> None:
        self._source = source
        self._current = current
        self._system = system  # messaging.system of the create spans: the broker's kind

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
