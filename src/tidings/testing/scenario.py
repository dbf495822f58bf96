"""Given / When / Then across contexts, in one process.

::

    scenario = Scenario(catalog, basket)
    await scenario.given(ProductUpdatedIntegrationEvent(product_id="p-1", price=40),
                         source="catalog")
    await scenario.when(catalog, lambda: change_price.execute("p-1", Decimal("35")))
    scenario.then_published(catalog, ProductPriceChangedIntegrationEvent, product_id="p-1")
    assert basket_price("p-1") == 35      # the effect, read from basket's own tables

``given`` publishes integration events as if another context had (into the broker the
contexts share) and delivers them; ``when`` runs a use case in a context's transaction
and delivers what follows from it; ``then_published`` asserts on what the ``when`` step
published, context by context.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tidings.contracts.cloud_event import CloudEvent, format_time
from tidings.contracts.integration_event import ENVELOPE_FIELDS, IntegrationEvent
from tidings.errors import ConfigurationError
from tidings.testing.delivery import DeliveryReport, deliver
from tidings.testing.published import PublishedEvents, outbox_mark, published
from tidings.transports.registry import open_transport

if TYPE_CHECKING:
    from tidings.context import BoundedContext


class Scenario:
    """A Given / When / Then test of several contexts sharing one test broker."""

    def __init__(self, *contexts: BoundedContext, max_attempts: int = 3) -> None:
        if not contexts:
            raise ConfigurationError("Scenario needs the contexts it exercises")
        brokers = {context.broker_url for context in contexts}
        if len(brokers) != 1:
            raise ConfigurationError(
                "the contexts of a Scenario must share one broker_url (e.g. memory://test); "
                f"they use {sorted(brokers)}"
            )
        self.contexts = contexts
        self.max_attempts = max_attempts
        self.last_delivery: DeliveryReport | None = None
        self._published: dict[str, PublishedEvents] = {}

    async def given(self, *events: IntegrationEvent, source: str = "given") -> DeliveryReport:
        """Publish ``events`` as context ``source`` would, and deliver them."""
        for context in self.contexts:
            if context.integration_handlers:
                # The subscriptions exist before the events do, as in a deployed system.
                from tidings.consumer.consumer import Consumer

                await Consumer(context).declare()
        transport = open_transport(self.contexts[0].broker_url)
        async with transport:
            await transport.publish_batch(source, [_cloud_event(e, source) for e in events])
        return await self._deliver()

    async def when(self, context: BoundedContext, use_case: Callable[[], Any]) -> DeliveryReport:
        """Run ``use_case`` in ``context``'s transaction, then deliver what follows.

        A plain function runs in ``with context.transaction():``, an ``async def`` one in
        ``async with``. What each context publishes meanwhile is kept for
        :meth:`then_published`.
        """
        marks = {ctx.name: outbox_mark(ctx) for ctx in self.contexts}
        if inspect.iscoroutinefunction(use_case):
            async with context.transaction():
                await use_case()
        else:
            with context.transaction():
                outcome = use_case()
            if inspect.isawaitable(outcome):
                raise ConfigurationError(
                    "when() got a plain function returning an awaitable; pass the async def "
                    "itself so it runs inside the asyncio transaction"
                )
        report = await self._deliver()
        # deliver() archives what it relays, so the outbox still shows every event.
        self._published = {ctx.name: published(ctx, since=marks[ctx.name]) for ctx in self.contexts}
        return report

    def published_by(self, context: BoundedContext) -> PublishedEvents:
        """What ``context`` published during the last :meth:`when`, handlers included."""
        try:
            return self._published[context.name]
        except KeyError:
            raise ConfigurationError(
                f"{context.name} is not part of this scenario, or when() has not run"
            ) from None

    def then_published(
        self,
        context: BoundedContext,
        contract: type[IntegrationEvent],
        *,
        times: int = 1,
        **fields: Any,
    ) -> list[IntegrationEvent]:
        """Assert that the ``when`` step made ``context`` publish ``contract`` ``times``."""
        return self.published_by(context).assert_published(contract, times=times, **fields)

    def then_nothing_else_published(self) -> None:
        """Assert that every event published in the ``when`` step was asserted on."""
        for events in self._published.values():
            events.assert_nothing_else()

    async def _deliver(self) -> DeliveryReport:
        report = await deliver(*self.contexts, max_attempts=self.max_attempts)
        self.last_delivery = report
        return report


def _cloud_event(event: IntegrationEvent, source: str) -> CloudEvent:
    """The CloudEvent a producing context ``source`` would send for ``event``."""
    return CloudEvent(
        id=str(event.event_id),
        source=source,
        type=event.event_type,
        dataversion=event.event_version,
        time=format_time(event.occurred_at),
        subject=event.partition_key(),
        correlationid=str(event.event_id),
        data_json=event.__pydantic_serializer__.to_json(event, exclude=set(ENVELOPE_FIELDS)),
    )
