"""Running a context's integration event handlers in its own transactions, inbox-guarded.

A micro-batch runs in one transaction with one inbox claim; a single event (a retry, a
replay) runs in a transaction of its own that continues the event's flow, so what its
handlers publish carries its correlation id and names it as the cause.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.util import await_only

from tidings.causality.records import Outcome, handled_row, insert_handled
from tidings.consumer.inbox import claim, inbox_row, insert_unless_present
from tidings.consumer.items import HandlerFailed, Item
from tidings.consumer.subscriptions import IntegrationSubscription, IntegrationSubscriptions
from tidings.observability.metrics import count, record_handler_duration
from tidings.observability.tracing import ProcessSpans

if TYPE_CHECKING:
    from tidings.context import BoundedContext


class HandlerRunner:
    """Runs the handlers of one consumer group; counts what it handled and skipped.

    Each event's handlers run inside its ``process`` span (when tracing), so that what
    they publish continues the event's trace.
    """

    def __init__(
        self,
        context: BoundedContext,
        subscriptions: IntegrationSubscriptions,
        group: str,
        spans: ProcessSpans,
    ) -> None:
        self.context = context
        self.subscriptions = subscriptions
        self.group = group
        self.spans = spans
        self._inbox_insert = insert_unless_present(context.async_engine.dialect)

    async def handle_together(
        self, items: Sequence[Item], connection: AsyncConnection | None
    ) -> tuple[int, int]:
        """All items in one transaction, duplicates (inbox) skipped; (handled, duplicates).

        Raises :class:`HandlerFailed` when a handler's failure belongs to one item, or
        the error itself when it belongs to no single one.
        """
        async with self.context.transaction(connection=connection) as session:
            first_of_id: dict[str, Item] = {}
            for item in items:
                first_of_id.setdefault(item.event.id, item)
            batch = [(item.event, item.received_at) for item in items]
            claimed = await claim(session, self.group, batch)  # and records the outcomes
            fresh = [item for event_id, item in first_of_id.items() if event_id in claimed]
            for run in _runs_of_one_contract(fresh):
                subscriptions = self.subscriptions.by_contract[type(run[0].contract)]
                if any(subscription.call_batch for subscription in subscriptions):
                    # A failure here is charged to no event: the one-by-one retry
                    # that follows finds the event it belongs to.
                    await self._run_batch(session, subscriptions, run)
                    continue
                if not any(subscription.is_async for subscription in subscriptions):
                    # Synchronous handlers only: the whole run in one call of the
                    # session's synchronous face, not one greenlet hand-off per event.
                    await session.run_sync(self._run_sync_handlers, subscriptions, run)
                    continue
                for item in run:
                    try:
                        await self._run_handlers(session, item)
                    except Exception as error:
                        raise HandlerFailed(item, error) from error
        # Committed: counted once per type, the batch's count at a time.
        name = self.context.name
        count("handled", name, [item.event.type for item in fresh])
        if len(fresh) < len(items):
            fresh_ids = {id(item) for item in fresh}
            count("duplicates", name, [i.event.type for i in items if id(i) not in fresh_ids])
        return len(fresh), len(items) - len(fresh)

    async def handle_once(self, item: Item) -> bool:
        """One event in its own transaction; False if the inbox had it already."""
        async with self.context.transaction(
            correlation_id=item.event.correlationid, causation_id=item.event.id
        ) as session:
            claimed = await session.execute(
                self._inbox_insert, inbox_row(self.group, item.event.id)
            )
            if not getattr(claimed, "rowcount", 1):
                await session.execute(insert_handled, self._record(item, Outcome.DUPLICATE))
                duplicate = True
            else:
                duplicate = False
                await self._run_handlers(session, item)
                await session.execute(insert_handled, self._record(item, Outcome.HANDLED))
        count("duplicates" if duplicate else "handled", self.context.name, (item.event.type,))
        return not duplicate

    def _record(self, item: Item, outcome: Outcome) -> dict[str, Any]:
        return handled_row(self.group, item.event, item.received_at, outcome)

    async def _run_handlers(self, session: Any, item: Item) -> None:
        self._continue_flow(item)
        started = time.perf_counter()
        with self.spans.activate(self.spans.start(item.event)):
            for subscription in self.subscriptions.by_contract[type(item.contract)]:
                await _call(session, subscription.call, subscription.is_async, item.contract)
            await self._dispatch_recorded()
        record_handler_duration(self.context.name, item.event.type, started)

    def _run_sync_handlers(
        self, _session: Any, subscriptions: Sequence[IntegrationSubscription], run: list[Item]
    ) -> None:
        """:meth:`_run_handlers` for each item of ``run``, inside the session's greenlet.

        Domain events the handlers record are dispatched after each item, as there;
        their (asynchronous) bus is awaited from here only when there are some.
        """
        for item in run:
            try:
                self._continue_flow(item)
                started = time.perf_counter()
                with self.spans.activate(self.spans.start(item.event)):
                    for subscription in subscriptions:
                        subscription.call(item.contract)
                    uow = self.context._current.get()
                    while uow is not None and (events := uow.pull_recorded_events()):
                        await_only(self._publish_domain_events(events))
                record_handler_duration(self.context.name, item.event.type, started)
            except Exception as error:
                raise HandlerFailed(item, error) from error

    async def _publish_domain_events(self, events: Sequence[Any]) -> None:
        for event in events:
            await self.context.async_domain_events.publish(event)

    async def _dispatch_recorded(self) -> None:
        """Dispatch the domain events the item's handlers recorded on aggregates now, not
        at commit: what their handlers publish then carries this item's correlation id and
        trigger, not those of the micro-batch's last event."""
        uow = self.context._current.get()
        if uow is None:
            return
        while events := uow.pull_recorded_events():
            await self._publish_domain_events(events)

    async def _run_batch(
        self, session: Any, subscriptions: Sequence[IntegrationSubscription], run: list[Item]
    ) -> None:
        """Each handler once for the run (``handle_batch``) or once per event (``handle``).

        Every event has its process span; a ``handle_batch`` call runs in the first
        event's, as it continues the first event's correlation.
        """
        started = time.perf_counter()
        spans = [self.spans.start(item.event) for item in run]
        try:
            for subscription in subscriptions:
                if subscription.call_batch is not None:
                    self._continue_flow(run[0], causation=False)
                    contracts = [item.contract for item in run]
                    with self.spans.activate(spans[0], end=False):
                        await _call(
                            session, subscription.call_batch, subscription.batch_is_async, contracts
                        )
                    continue
                for item, span in zip(run, spans, strict=True):
                    self._continue_flow(item)
                    with self.spans.activate(span, end=False):
                        await _call(
                            session, subscription.call, subscription.is_async, item.contract
                        )
                        await self._dispatch_recorded()
        finally:
            self.spans.end(spans)
        record_handler_duration(self.context.name, run[0].event.type, started)  # the run's

    def _continue_flow(self, item: Item, *, causation: bool = True) -> None:
        """Events a handler publishes continue the flow of the event it handles."""
        uow = self.context._current.get()
        if uow is not None:
            uow.correlation_id = item.event.correlationid or uow.correlation_id
            uow.causation_id = item.event.id if causation else None
            uow.in_handler = True  # what the handler publishes comes from a handler


def _runs_of_one_contract(items: list[Item]) -> list[list[Item]]:
    """Split ``items`` into consecutive runs of the same contract class, order kept."""
    runs: list[list[Item]] = []
    for item in items:
        if runs and type(runs[-1][0].contract) is type(item.contract):
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


async def _call(session: Any, call: Any, is_async: bool, argument: Any) -> None:
    if is_async:
        await call(argument)
    else:
        # Synchronous handlers use the synchronous face of the same session.
        await session.run_sync(_call_sync, call, argument)


def _call_sync(_session: Any, call: Any, argument: Any) -> None:
    call(argument)
