"""Failures as spans and metrics: a handler that always fails is retried, then dead-lettered;
a redelivered event is skipped by the inbox and counted as a duplicate.

With the OpenTelemetry SDK (in-memory span exporter and metric reader): each attempt has
its own ``process`` span with status ERROR and the exception; the counters say exactly
how many attempts failed, how many delayed retries ran and why the event was
dead-lettered, next to the healthy event handled beside it.
"""

from __future__ import annotations

from pathlib import Path

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from sqlalchemy import select

from tests.support import traced_app
from tests.support.consumer_infra import declare, new_tag, running, wait_until
from tests.support.otel import by_name, metric_reader, metric_value
from tidings import IntegrationEventHandler, RetryPolicy
from tidings.consumer import Consumer
from tidings.contracts.envelope import cloud_event_from_row
from tidings.outbox import Relay
from tidings.persistence.tables import outbox
from tidings.transports import open_transport

CHANGED = traced_app.PriceChangedIntegrationEvent.event_type


class RefuseProduct(IntegrationEventHandler):
    def handle(self, event: traced_app.PriceChangedIntegrationEvent) -> None:
        if event.product_id == "bad":
            raise RuntimeError("refused")


async def test_attempts_retries_and_dead_letters_are_counted_and_traced(
    tmp_path: Path, span_exporter: InMemorySpanExporter
) -> None:
    reader = metric_reader()
    tag = new_tag()
    broker_url = f"sqlite:///{tmp_path / 'broker.db'}"
    catalog, basket, notifications = traced_app.build(str(tmp_path), broker_url, tag)
    basket.subscribe(RefuseProduct())
    consumer = Consumer(
        basket,
        immediate_retries=1,
        max_attempts=3,
        retry=RetryPolicy(initial_delay=0.01, max_delay=0.02),
    )
    try:
        await declare(consumer)
        traced_app.change_price(catalog, "good", 1)
        traced_app.change_price(catalog, "bad", 2)
        assert await Relay(catalog).drain() == 4
        async with running(consumer):
            await wait_until(lambda: consumer.stats.dead_lettered == 1, what="the dead letter")
    finally:
        for context in (catalog, basket, notifications):
            await context.adispose()

    name = f"basket{tag}"
    assert metric_value(reader, "tidings.events.received", context=name) == 2
    assert metric_value(reader, "tidings.events.handled", context=name, event_type=CHANGED) == 1
    # the batch attempt, one immediate retry, one delayed retry: three failed attempts
    assert metric_value(reader, "tidings.events.failed", context=name, event_type=CHANGED) == 3
    assert metric_value(reader, "tidings.events.retried", context=name) == 1
    assert (
        metric_value(reader, "tidings.events.dead_lettered", context=name, reason="handler_failed")
        == 1
    )
    assert metric_value(reader, "tidings.events.relayed", context=f"catalog{tag}") == 4
    assert metric_value(reader, "tidings.events.published", context=f"catalog{tag}") == 4

    processed = by_name(span_exporter.get_finished_spans(), f"process {CHANGED}")
    failed = [span for span in processed if span.status.status_code is StatusCode.ERROR]
    assert len(failed) == 3
    assert all(any(e.name == "exception" for e in span.events) for span in failed)
    bad_ids = {span.attributes["messaging.message.id"] for span in failed if span.attributes}
    assert len(bad_ids) == 1


async def test_redelivered_events_are_counted_as_duplicates(tmp_path: Path) -> None:
    reader = metric_reader()
    tag = new_tag()
    broker_url = f"sqlite:///{tmp_path / 'broker.db'}"
    catalog, basket, notifications = traced_app.build(str(tmp_path), broker_url, tag)
    consumer = Consumer(basket)
    transport = open_transport(broker_url)
    try:
        await declare(consumer)
        traced_app.change_price(catalog, "p-1", 1)
        with catalog.engine.connect() as connection:
            rows = (
                connection.execute(select(outbox).where(outbox.c.event_type == CHANGED))
                .mappings()
                .all()
            )
        event = cloud_event_from_row(rows[0])
        await transport.connect()
        await transport.publish_batch(event.source, [event])
        await transport.publish_batch(event.source, [event])  # as after a relay crash
        async with running(consumer):
            await wait_until(
                lambda: consumer.stats.handled + consumer.stats.duplicates == 2, what="both"
            )
    finally:
        await transport.close()
        for context in (catalog, basket, notifications):
            await context.adispose()
    name = f"basket{tag}"
    assert metric_value(reader, "tidings.events.received", context=name) == 2
    assert metric_value(reader, "tidings.events.handled", context=name, event_type=CHANGED) == 1
    assert metric_value(reader, "tidings.events.duplicates", context=name, event_type=CHANGED) == 1
