"""Who handles which domain event: subscriptions and per-class dispatch plans."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tidings.application.introspection import handled_types, handler_id, is_coroutine_handler
from tidings.domain.events import DomainEvent
from tidings.errors import ConfigurationError
from tidings.observability.tracing import traced_handler_call


@dataclass(frozen=True, slots=True)
class Subscription:
    """One handler subscribed to the domain event classes of its ``handle`` annotation."""

    handler: Any
    handler_id: str
    event_types: tuple[type[DomainEvent], ...]
    after_commit: bool
    is_async: bool

    @property
    def handle(self) -> Callable[[Any], Any]:
        return self.handler.handle  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class DispatchPlan:
    """What publishing one concrete event class does, computed once per class."""

    inline: tuple[Subscription, ...]
    inline_calls: tuple[Callable[[Any], Any], ...]
    after_commit: tuple[Subscription, ...]
    has_async_inline: bool
    # Only synchronous inline handlers: the fast path needs no other check.
    simple: bool
    # The one inline handler's call when there is exactly one (no loop to set up).
    single: Callable[[Any], Any] | None


class DomainEventSubscriptions:
    """The registry of domain event handlers of one bounded context.

    Dispatch plans are cached per concrete event class, so publishing does one dict
    lookup and no reflection; subscribing clears the cache.
    """

    def __init__(self, *, traced: bool = False) -> None:
        self._subscriptions: list[Subscription] = []
        self.plans: dict[type, DispatchPlan] = {}
        # Inline handlers run in a span each (when an OpenTelemetry SDK is configured);
        # decided when a plan is made, so the untraced dispatch path is untouched.
        self.traced = traced

    def add(self, handler: object, *, after_commit: bool = False) -> Subscription:
        types = handled_types(handler, DomainEvent, "DomainEventHandler")
        subscription = Subscription(
            handler=handler,
            handler_id=handler_id(handler),
            event_types=types,
            after_commit=after_commit,
            is_async=is_coroutine_handler(handler),
        )
        if after_commit and any(
            s.after_commit and s.handler_id == subscription.handler_id for s in self._subscriptions
        ):
            raise ConfigurationError(
                f"{subscription.handler_id} is already subscribed after commit; durable "
                "work is stored under the handler's class name, so subscribe one instance "
                "per class"
            )
        self._subscriptions.append(subscription)
        self.plans.clear()
        return subscription

    def plan_for(self, event_type: type) -> DispatchPlan:
        plan = self.plans.get(event_type)
        if plan is None:
            if not (isinstance(event_type, type) and issubclass(event_type, DomainEvent)):
                raise TypeError(
                    f"{event_type.__name__} is not a DomainEvent; integration events are "
                    "published through IntegrationEventProducer"
                )
            matching = [s for s in self._subscriptions if issubclass(event_type, s.event_types)]
            inline = tuple(s for s in matching if not s.after_commit)
            after_commit_subscriptions = tuple(s for s in matching if s.after_commit)
            calls = tuple(self._call(s) for s in inline)
            plan = DispatchPlan(
                inline=inline,
                inline_calls=calls,
                after_commit=after_commit_subscriptions,
                has_async_inline=any(s.is_async for s in inline),
                simple=not after_commit_subscriptions and not any(s.is_async for s in inline),
                single=calls[0] if len(inline) == 1 else None,
            )
            self.plans[event_type] = plan
        return plan

    def _call(self, subscription: Subscription) -> Callable[[Any], Any]:
        if not self.traced:
            return subscription.handle
        return traced_handler_call(
            subscription.handle, subscription.handler_id, subscription.is_async
        )

    def after_commit_subscription(self, handler_id: str) -> Subscription | None:
        for subscription in self._subscriptions:
            if subscription.after_commit and subscription.handler_id == handler_id:
                return subscription
        return None

    def __iter__(self) -> Any:
        return iter(self._subscriptions)
