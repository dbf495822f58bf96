"""Running a context's integration event handlers in its own transactions, inbox-guarded.

A micro-batch runs in one transaction with one inbox claim; a single event (a retry, a
replay) runs in a transaction of its own that continues the event's flow, so what its
handlers publish carries its correlation id and names it as the cause.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

from tidings.consumer.inbox import claim, inbox_row, insert_unless_present
from tidings.consumer.items import HandlerFailed, Item
from tidings.consumer.subscriptions import IntegrationSubscription, IntegrationSubscriptions

if TYPE_CHECKING:
    from tidings.context import BoundedContext


class HandlerRunner:
    """Runs the handlers of one consumer group; counts what it handled and skipped."""

    def __init__(
        self, context: BoundedContext, subscriptions: IntegrationSubscriptions, group: str
    ) -> None:
        self.context = context
        self.subscriptions = subscriptions
        self.group = group
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
            claimed = await claim(session, self.group, list(first_of_id))
            fresh = [item for event_id, item in first_of_id.items() if event_id in claimed]
            for run in _runs_of_one_contract(fresh):
                subscriptions = self.subscriptions.by_contract[type(run[0].contract)]
                if any(subscription.call_batch for subscription in subscriptions):
                    # A failure here is charged to no event: the one-by-one retry
                    # that follows finds the event it belongs to.
                    await self._run_batch(session, subscriptions, run)
                    continue
                for item in run:
                    try:
                        await self._run_handlers(session, item)
                    except Exception as error:
                        raise HandlerFailed(item, error) from error
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
                return False
            await self._run_handlers(session, item)
        return True

    async def _run_handlers(self, session: Any, item: Item) -> None:
        self._continue_flow(item)
        for subscription in self.subscriptions.by_contract[type(item.contract)]:
            await _call(session, subscription.call, subscription.is_async, item.contract)

    async def _run_batch(
        self, session: Any, subscriptions: Sequence[IntegrationSubscription], run: list[Item]
    ) -> None:
        """Each handler once for the run (``handle_batch``) or once per event (``handle``)."""
        for subscription in subscriptions:
            if subscription.call_batch is not None:
                self._continue_flow(run[0], causation=False)
                contracts = [item.contract for item in run]
                await _call(
                    session, subscription.call_batch, subscription.batch_is_async, contracts
                )
                continue
            for item in run:
                self._continue_flow(item)
                await _call(session, subscription.call, subscription.is_async, item.contract)

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
