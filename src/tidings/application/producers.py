"""Publishing domain events in-process, sync and asyncio flavours."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from tidings.application.subscriptions import DispatchPlan, DomainEventSubscriptions
from tidings.application.unit_of_work import (
    UnitOfWork,
    cascade_depth_exceeded,
    cascade_depth_exceeded_unscoped,
)
from tidings.domain.events import DomainEvent
from tidings.errors import ConfigurationError, NoActiveTransactionError

# Nesting of dispatches outside any transaction, where no unit of work counts it: without
# it a cycle of handlers would end in RecursionError instead of a clear error.


class _ProducerBase:
    __slots__ = ("_current", "_plans", "_subscriptions")

    def __init__(
        self,
        subscriptions: DomainEventSubscriptions,
        current: ContextVar[UnitOfWork | None],
    ) -> None:
        self._subscriptions = subscriptions
        # The registry's own cache dict: one lookup on the hot path, cleared on subscribe.
        self._plans = subscriptions.plans
        self._current = current

    def _plan(self, event: DomainEvent) -> DispatchPlan:
        plan = self._plans.get(event.__class__)
        if plan is None:
            plan = self._subscriptions.plan_for(event.__class__)
        return plan


def _require_transaction_for_after_commit(event: DomainEvent) -> None:
    raise NoActiveTransactionError(
        f"{type(event).__name__} has after-commit handlers, which are recorded durably in "
        "the current transaction: publish it inside `with ctx.transaction():`"
    )


class DomainEventProducer(_ProducerBase):
    """Publishes domain events to the context's handlers, synchronously, in-process.

    Inside a transaction, handlers run in subscription order within it (a failure
    aborts the whole use case) and after-commit handlers are recorded durably to run
    once it has committed.
    """

    __slots__ = ()

    def publish(self, event: DomainEvent) -> None:
        """Run the inline handlers of ``event`` now; defer its after-commit handlers."""
        # The hot path of the library: kept to attribute reads and plain calls.
        plan = self._plans.get(event.__class__) or self._plan(event)
        uow = self._current.get()
        if not plan.simple:
            _check_sync_dispatch(plan, event, uow)
        if uow is None:
            try:
                single = plan.single
                if single is not None:
                    single(event)
                else:
                    for call in plan.inline_calls:
                        call(event)
            except RecursionError as error:
                raise cascade_depth_exceeded_unscoped(event) from error
            return
        depth = uow.depth
        if depth >= uow.max_depth:
            raise cascade_depth_exceeded(depth, event)
        cause = uow.cause
        uow.depth = depth + 1
        uow.cause = event
        try:
            single = plan.single
            if single is not None:
                single(event)
            else:
                for call in plan.inline_calls:
                    call(event)
        finally:
            uow.depth = depth
            uow.cause = cause
        if plan.after_commit:
            uow.defer(event, plan)


class AsyncDomainEventProducer(_ProducerBase):
    """The asyncio flavour of :class:`DomainEventProducer`: ``await producer.publish(event)``.

    ``async def`` handlers are awaited; plain handlers run through the session's
    ``run_sync`` so that synchronous repositories keep working inside an async
    transaction.
    """

    __slots__ = ()

    async def publish(self, event: DomainEvent) -> None:
        """Run the inline handlers of ``event`` now; defer its after-commit handlers."""
        plan = self._plans.get(event.__class__) or self._plan(event)
        uow = self._current.get()
        if uow is None:
            if plan.after_commit:
                _require_transaction_for_after_commit(event)
            try:
                await _run_inline(plan, event, None)
            except RecursionError as error:
                raise cascade_depth_exceeded_unscoped(event) from error
            return
        state = uow.enter_handling(event)
        try:
            await _run_inline(plan, event, uow)
        finally:
            uow.leave_handling(state)
        if plan.after_commit:
            uow.defer(event, plan)


async def _run_inline(plan: DispatchPlan, event: DomainEvent, uow: UnitOfWork | None) -> None:
    for subscription, call in zip(plan.inline, plan.inline_calls, strict=True):
        if subscription.is_async:
            await call(event)
        elif uow is not None and uow.async_session is not None:
            await uow.async_session.run_sync(_call_ignoring_session, call, event)
        else:
            call(event)


def _call_ignoring_session(_session: Any, call: Any, event: DomainEvent) -> None:
    call(event)


def _check_sync_dispatch(plan: DispatchPlan, event: DomainEvent, uow: UnitOfWork | None) -> None:
    if plan.has_async_inline:
        _refuse_async(plan)
    if uow is None and plan.after_commit:
        _require_transaction_for_after_commit(event)


def _refuse_async(plan: DispatchPlan) -> None:
    names = ", ".join(s.handler_id for s in plan.inline if s.is_async)
    raise ConfigurationError(
        f"async handlers ({names}) cannot run from the synchronous DomainEventProducer; "
        "publish through ctx.async_domain_events (await producer.publish(event))"
    )
