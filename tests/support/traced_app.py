"""Three contexts whose one use case crosses them all, for the tracing and metrics tests.

* **catalog**'s use case changes a price; an inline domain event handler publishes
  ``PriceChangedIntegrationEvent``, an after-commit one ``PriceAnnouncedIntegrationEvent``.
* **basket** consumes the price change; its handler publishes
  ``BasketRepricedIntegrationEvent``.
* **notifications** consumes basket's event and the announcement.

The CLI test runs ``tidings run tests.support.traced_app:basket`` (and the others) in
subprocesses: the URLs travel in the environment variables below.
"""

from __future__ import annotations

import os
from typing import ClassVar

from tidings import (
    BoundedContext,
    DomainEvent,
    DomainEventHandler,
    IntegrationEvent,
    IntegrationEventHandler,
)

BROKER_ENV = "TIDINGS_TRACED_TEST_BROKER_URL"
FOLDER_ENV = "TIDINGS_TRACED_TEST_FOLDER"
SUFFIX_ENV = "TIDINGS_TRACED_TEST_SUFFIX"
#: when set, the process configures the OpenTelemetry SDK (as an application would, in
#: the module defining its context) and writes each finished span to this file, as JSON
SPANS_ENV = "TIDINGS_TRACED_TEST_SPANS_FILE"


class PriceChangedIntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = "tracedtest.catalog.price_changed"
    event_version: ClassVar[int] = 1

    product_id: str
    price: int


class PriceAnnouncedIntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = "tracedtest.catalog.price_announced"
    event_version: ClassVar[int] = 1

    product_id: str


class BasketRepricedIntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = "tracedtest.basket.repriced"
    event_version: ClassVar[int] = 1

    product_id: str
    price: int


class ProductPriceChanged(DomainEvent):
    product_id: str
    price: int


class PublishPriceChanged(DomainEventHandler):
    publishes = (PriceChangedIntegrationEvent,)

    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def handle(self, event: ProductPriceChanged) -> None:
        self._context.integration_events.publish(
            PriceChangedIntegrationEvent(product_id=event.product_id, price=event.price)
        )


class AnnouncePrice(DomainEventHandler):
    """After commit (in a transaction of its own): what it publishes continues the trace."""

    publishes = (PriceAnnouncedIntegrationEvent,)

    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def handle(self, event: ProductPriceChanged) -> None:
        self._context.integration_events.publish(
            PriceAnnouncedIntegrationEvent(product_id=event.product_id)
        )


class RepriceBaskets(IntegrationEventHandler):
    publishes = (BasketRepricedIntegrationEvent,)

    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def handle(self, event: PriceChangedIntegrationEvent) -> None:
        self._context.integration_events.publish(
            BasketRepricedIntegrationEvent(product_id=event.product_id, price=event.price)
        )


class Notify(IntegrationEventHandler):
    def __init__(self) -> None:
        self.received: list[str] = []

    def handle(self, event: BasketRepricedIntegrationEvent) -> None:
        self.received.append(event.product_id)


class NotifyAnnouncement(IntegrationEventHandler):
    def __init__(self) -> None:
        self.received: list[str] = []

    def handle(self, event: PriceAnnouncedIntegrationEvent) -> None:
        self.received.append(event.product_id)


def change_price(context: BoundedContext, product_id: str, price: int) -> None:
    """catalog's use case: record the change (a domain event) in a transaction."""
    with context.transaction():
        context.domain_events.publish(ProductPriceChanged(product_id=product_id, price=price))


def build(
    folder: str, broker_url: str, suffix: str = "", *, trace_domain_handlers: bool = False
) -> tuple[BoundedContext, BoundedContext, BoundedContext]:
    """catalog, basket and notifications, each with a SQLite file in ``folder``."""

    def context(name: str, **options: bool) -> BoundedContext:
        full = f"{name}{suffix}"
        built = BoundedContext(
            full,
            database_url=f"sqlite:///{folder}/{full}.db",
            broker_url=broker_url,
            **options,
        )
        built.create_tables()
        return built

    catalog = context("catalog", trace_domain_handlers=trace_domain_handlers)
    catalog.subscribe(PublishPriceChanged(catalog))
    catalog.subscribe(AnnouncePrice(catalog), after_commit=True)
    basket = context("basket")
    basket.subscribe(RepriceBaskets(basket))
    notifications = context("notifications")
    notifications.subscribe(Notify())
    notifications.subscribe(NotifyAnnouncement())
    return catalog, basket, notifications


def _configure_tracing(path: str) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    out = open(path, "a")  # noqa: SIM115 - the process's lifetime
    provider = TracerProvider()
    exporter = ConsoleSpanExporter(out=out, formatter=lambda span: span.to_json(indent=None) + "\n")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


def _from_environment() -> tuple[BoundedContext, BoundedContext, BoundedContext]:
    if os.environ.get(SPANS_ENV):
        _configure_tracing(os.environ[SPANS_ENV])
    return build(os.environ[FOLDER_ENV], os.environ[BROKER_ENV], os.environ.get(SUFFIX_ENV, ""))


def catalog() -> BoundedContext:
    """``tidings run tests.support.traced_app:catalog`` (URLs from the environment)."""
    return _from_environment()[0]


def basket() -> BoundedContext:
    return _from_environment()[1]


def notifications() -> BoundedContext:
    return _from_environment()[2]
