"""One use case traced through three contexts, over the SQLite-file broker and RabbitMQ.

catalog's use case publishes a price change (inline handler) and an announcement
(after-commit handler); basket's consumer handles the change and publishes its own
event; notifications handles both of the others. With the OpenTelemetry SDK and an
in-memory exporter, every span of the journey shares the use case's trace id, each
span's parent is its cause, and attributes follow the messaging conventions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.support import traced_app
from tests.support.consumer_infra import (
    declare,
    new_tag,
    rabbitmq_url,
    remove_rabbitmq,
    running,
    wait_until,
)
from tests.support.otel import by_name, one, parent_of
from tidings import (
    BoundedContext,
    DomainEvent,
    DomainEventHandler,
    IntegrationEventHandler,
)
from tidings.consumer import Consumer
from tidings.outbox import Relay

CHANGED = traced_app.PriceChangedIntegrationEvent.event_type
ANNOUNCED = traced_app.PriceAnnouncedIntegrationEvent.event_type
REPRICED = traced_app.BasketRepricedIntegrationEvent.event_type


@pytest.fixture(params=["sqlite-broker", "rabbitmq"])
async def broker(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """(broker URL, the suffix of the test's context names)."""
    tag = new_tag()
    if request.param == "sqlite-broker":
        yield f"sqlite:///{tmp_path / 'broker.db'}", tag
        return
    try:
        yield rabbitmq_url(tag), tag
    finally:
        await remove_rabbitmq(tag, [f"basket{tag}", f"notifications{tag}"])


async def test_one_trace_runs_from_the_use_case_through_every_context(
    broker: tuple[str, str], tmp_path: Path, span_exporter: InMemorySpanExporter
) -> None:
    broker_url, tag = broker
    catalog, basket, notifications = traced_app.build(str(tmp_path), broker_url, tag)
    basket_consumer = Consumer(basket)
    notifications_consumer = Consumer(notifications)
    try:
        await declare(basket_consumer)
        await declare(notifications_consumer)
        tracer = trace.get_tracer("test")
        with tracer.start_as_current_span("change price") as use_case:
            traced_app.change_price(catalog, "p-1", 12)
        assert await Relay(catalog).drain() == 2
        async with running(basket_consumer, notifications_consumer):
            await wait_until(lambda: basket_consumer.stats.handled == 1, what="basket")
            assert await Relay(basket).drain() == 1
            await wait_until(lambda: notifications_consumer.stats.handled == 2, what="both")
    finally:
        for context in (catalog, basket, notifications):
            await context.adispose()

    spans = span_exporter.get_finished_spans()
    trace_id = use_case.get_span_context().trace_id
    assert {span.context.trace_id for span in spans} == {trace_id}, [s.name for s in spans]

    created = one(spans, f"create {CHANGED}")
    announced = one(spans, f"create {ANNOUNCED}")
    processed = one(spans, f"process {CHANGED}")
    repriced = one(spans, f"create {REPRICED}")
    notified = one(spans, f"process {REPRICED}")
    announcement = one(spans, f"process {ANNOUNCED}")
    use_case_id = use_case.get_span_context().span_id
    # The causal chain, span by span.
    assert parent_of(created) == use_case_id
    assert parent_of(announced) == use_case_id  # the after-commit handler's event
    assert parent_of(processed) == created.context.span_id
    assert parent_of(repriced) == processed.context.span_id  # published by basket's handler
    assert parent_of(notified) == repriced.context.span_id
    assert parent_of(announcement) == announced.context.span_id

    system = "rabbitmq" if broker_url.startswith("amqp") else "sqlite"
    for span, operation, kind in [
        (created, "create", SpanKind.PRODUCER),
        (announced, "create", SpanKind.PRODUCER),
        (processed, "process", SpanKind.CONSUMER),
        (repriced, "create", SpanKind.PRODUCER),
        (notified, "process", SpanKind.CONSUMER),
    ]:
        assert span.kind is kind
        attributes = span.attributes or {}
        assert attributes["messaging.system"] == system
        assert attributes["messaging.operation.type"] == operation
        assert attributes["messaging.operation.name"] == operation
        assert span.name == f"{operation} {attributes['messaging.destination.name']}"
    attributes = processed.attributes or {}
    assert attributes["messaging.consumer.group.name"] == f"basket{tag}"
    assert attributes["messaging.message.id"] == (created.attributes or {})["messaging.message.id"]
    assert (notified.attributes or {})["messaging.consumer.group.name"] == f"notifications{tag}"

    # The relays' send spans: one per batch, linked to every event's create span.
    sends = [span for span in spans if span.name.startswith("send")]
    # catalog's two events of two types went in one batch; basket's alone
    assert sorted(span.name for span in sends) == ["send", f"send {REPRICED}"]
    assert all(span.kind is SpanKind.PRODUCER for span in sends)
    linked = {link.context.span_id for span in sends for link in span.links}
    assert linked == {created.context.span_id, announced.context.span_id, repriced.context.span_id}
    for span in sends:
        attributes = span.attributes or {}
        assert attributes["messaging.operation.type"] == "send"
        assert attributes["messaging.batch.message_count"] == len(span.links)
        assert parent_of(span) == span.links[0].context.span_id  # one trace: joined


async def test_process_spans_can_link_instead_of_parenting(
    tmp_path: Path, span_exporter: InMemorySpanExporter
) -> None:
    broker_url = f"sqlite:///{tmp_path / 'broker.db'}"
    catalog, basket, notifications = traced_app.build(str(tmp_path), broker_url)
    consumer = Consumer(basket, trace_parenting="link")
    try:
        await declare(consumer)
        traced_app.change_price(catalog, "p-1", 3)  # no span of the caller: create is a root
        assert await Relay(catalog).drain() == 2
        async with running(consumer):
            await wait_until(lambda: consumer.stats.handled == 1, what="basket")
    finally:
        for context in (catalog, basket, notifications):
            await context.adispose()
    spans = span_exporter.get_finished_spans()
    created = one(spans, f"create {CHANGED}")
    processed = one(spans, f"process {CHANGED}")
    assert processed.parent is None
    assert processed.context.trace_id != created.context.trace_id
    assert [link.context.span_id for link in processed.links] == [created.context.span_id]
    # what basket's handler publishes continues the process span's own trace
    assert parent_of(one(spans, f"create {REPRICED}")) == processed.context.span_id


async def test_domain_event_handlers_get_spans_when_asked(
    tmp_path: Path, span_exporter: InMemorySpanExporter
) -> None:
    broker_url = f"sqlite:///{tmp_path / 'broker.db'}"
    catalog, basket, notifications = traced_app.build(
        str(tmp_path), broker_url, trace_domain_handlers=True
    )
    plain, *_ = traced_app.build(str(tmp_path / ".."), broker_url, "_plain")
    try:
        traced_app.change_price(catalog, "p-1", 3)
        handler = one(span_exporter.get_finished_spans(), "PublishPriceChanged")
        assert (handler.attributes or {})["tidings.domain_event"] == "ProductPriceChanged"
        assert parent_of(one(span_exporter.get_finished_spans(), f"create {CHANGED}")) == (
            handler.context.span_id
        )
        span_exporter.clear()
        traced_app.change_price(plain, "p-1", 3)  # off by default
        assert not by_name(span_exporter.get_finished_spans(), "PublishPriceChanged")
    finally:
        for context in (catalog, basket, notifications, plain):
            await context.adispose()


def pricing_context(tmp_path: Path, broker_url: str) -> BoundedContext:
    """A fourth context, on a SQLite file of its own, for a test's own handlers."""
    pricing = BoundedContext(
        "pricing", database_url=f"sqlite:///{tmp_path / 'pricing.db'}", broker_url=broker_url
    )
    pricing.create_tables()
    return pricing


class BasketsTouched(DomainEvent):
    product_id: str


class TouchBaskets(IntegrationEventHandler):
    """A consumer handler recording a domain event whose handler runs after commit."""

    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def handle(self, event: traced_app.PriceChangedIntegrationEvent) -> None:
        self._context.domain_events.publish(BasketsTouched(product_id=event.product_id))


class RepriceAfterCommit(DomainEventHandler):
    publishes = (traced_app.BasketRepricedIntegrationEvent,)

    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def handle(self, event: BasketsTouched) -> None:
        self._context.integration_events.publish(
            traced_app.BasketRepricedIntegrationEvent(product_id=event.product_id, price=1)
        )


async def test_after_commit_work_of_a_consumer_handler_continues_its_process_span(
    tmp_path: Path, span_exporter: InMemorySpanExporter
) -> None:
    broker_url = f"sqlite:///{tmp_path / 'broker.db'}"
    catalog, basket, notifications = traced_app.build(str(tmp_path), broker_url)
    pricing = pricing_context(tmp_path, broker_url)
    pricing.subscribe(TouchBaskets(pricing))
    pricing.subscribe(RepriceAfterCommit(pricing), after_commit=True)
    consumer = Consumer(pricing)
    try:
        await declare(consumer)
        traced_app.change_price(catalog, "p-1", 3)
        assert await Relay(catalog).drain() == 2
        async with running(consumer):
            await wait_until(lambda: consumer.stats.handled == 1, what="pricing")
            await wait_until(lambda: pricing.outbox_count() == 1, what="the after-commit event")
    finally:
        for context in (catalog, basket, notifications, pricing):
            await context.adispose()
    spans = span_exporter.get_finished_spans()
    processed = one(spans, f"process {CHANGED}")
    created = one(spans, f"create {REPRICED}")
    assert parent_of(created) == processed.context.span_id
    assert created.context.trace_id == one(spans, f"create {CHANGED}").context.trace_id


class RepriceInBatches(IntegrationEventHandler):
    """Handles a run of price changes at once, publishing one event for the run."""

    def __init__(self, context: BoundedContext) -> None:
        self._context = context
        self.runs = 0

    def handle(self, event: traced_app.PriceChangedIntegrationEvent) -> None:
        self.handle_batch([event])

    def handle_batch(self, events: Sequence[traced_app.PriceChangedIntegrationEvent]) -> None:
        self.runs += 1
        self._context.integration_events.publish(
            traced_app.BasketRepricedIntegrationEvent(product_id=events[0].product_id, price=0)
        )


async def test_a_batch_handler_runs_in_the_first_events_process_span(
    tmp_path: Path, span_exporter: InMemorySpanExporter
) -> None:
    broker_url = f"sqlite:///{tmp_path / 'broker.db'}"
    catalog, basket, notifications = traced_app.build(str(tmp_path), broker_url)
    pricing = pricing_context(tmp_path, broker_url)
    handler = pricing.subscribe(RepriceInBatches(pricing))
    consumer = Consumer(pricing)
    try:
        await declare(consumer)
        for n in range(3):
            traced_app.change_price(catalog, f"p-{n}", n)
        assert await Relay(catalog).drain() == 6
        async with running(consumer):
            await wait_until(lambda: consumer.stats.handled == 3, what="pricing")
    finally:
        for context in (catalog, basket, notifications, pricing):
            await context.adispose()
    spans = span_exporter.get_finished_spans()
    processed = by_name(spans, f"process {CHANGED}")
    assert len(processed) == 3  # one per event, whether handled in a run or alone
    created = by_name(spans, f"create {REPRICED}")
    assert len(created) == handler.runs
    assert {parent_of(span) for span in created} <= {span.context.span_id for span in processed}


@pytest.mark.filterwarnings("ignore::tidings.errors.PublishedFromUseCaseWarning")
async def test_a_large_relay_batch_links_every_event_across_send_spans_of_128(
    tmp_path: Path, span_exporter: InMemorySpanExporter
) -> None:
    # The SDK keeps 128 links per span by default: one send span of 300 would lose 172.
    broker_url = f"sqlite:///{tmp_path / 'broker.db'}"
    catalog, basket, notifications = traced_app.build(str(tmp_path), broker_url)
    tracer = trace.get_tracer("test")
    try:
        with catalog.transaction(), tracer.start_as_current_span("reprice all"):
            for n in range(150):  # two events each: 300
                catalog.integration_events.publish(
                    traced_app.PriceChangedIntegrationEvent(product_id=f"p-{n}", price=n)
                )
                catalog.integration_events.publish(
                    traced_app.PriceAnnouncedIntegrationEvent(product_id=f"p-{n}")
                )
        assert await Relay(catalog, batch_size=500).drain() == 300
    finally:
        for context in (catalog, basket, notifications):
            await context.adispose()
    spans = span_exporter.get_finished_spans()
    sends = [span for span in spans if span.name.startswith("send")]
    assert sorted(len(span.links) for span in sends) == [44, 128, 128]
    for span in sends:
        assert (span.attributes or {})["messaging.batch.message_count"] == len(span.links)
    created = {span.context.span_id for span in spans if span.name.startswith("create")}
    assert len(created) == 300
    assert {link.context.span_id for span in sends for link in span.links} == created


class RefusePriceChange(IntegrationEventHandler):
    def handle(self, event: traced_app.PriceChangedIntegrationEvent) -> None:
        raise ValueError(f"no price for {event.product_id}")


async def test_a_failing_handler_marks_its_process_span_as_an_error(
    tmp_path: Path, span_exporter: InMemorySpanExporter
) -> None:
    broker_url = f"sqlite:///{tmp_path / 'broker.db'}"
    catalog, basket, notifications = traced_app.build(str(tmp_path), broker_url)
    pricing = pricing_context(tmp_path, broker_url)
    pricing.subscribe(RefusePriceChange())
    consumer = Consumer(pricing, max_attempts=1)
    try:
        await declare(consumer)
        traced_app.change_price(catalog, "p-9", 3)
        assert await Relay(catalog).drain() == 2
        async with running(consumer):
            await wait_until(lambda: consumer.stats.dead_lettered == 1, what="the dead letter")
    finally:
        for context in (catalog, basket, notifications, pricing):
            await context.adispose()
    processed = by_name(span_exporter.get_finished_spans(), f"process {CHANGED}")
    assert processed
    failed = processed[0]
    assert failed.status.status_code is trace.StatusCode.ERROR
    assert failed.status.description == "ValueError: no price for p-9"
    assert [event.name for event in failed.events] == ["exception"]
