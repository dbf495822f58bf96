"""The reference system's AsyncAPI documents and what its transports write, as JSON.

Run as ``python -m tests.support.asyncapi_reference``: the examples' contracts share
type names with the acceptance tests' own, so they are imported in a process of their
own rather than in the test run. Prints ``{"documents": {broker: document},
"samples": {message id: {"binary": {broker: {"headers", "body"}}, "structured": envelope}}}``
where each sample is a real outbox row of the contract encoded by each transport's own
encoder.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tidings import IntegrationEvent
from tidings.contracts.asyncapi import asyncapi_document
from tidings.contracts.cloudevents import CloudEvent, encode_binary, encode_structured
from tidings.contracts.envelope import cloud_event_from_row, outbox_row
from tidings.transports import kafka, nats_publish, rabbitmq

# The tests import BROKERS and CORRELATION_ID from here; the examples are imported only
# when this runs as a program.
BROKERS = {
    "sqlite": "sqlite:///.tidings-demo/broker.db",
    "rabbitmq": "amqp://shop:s3cret-pw@rabbit.example:5672/shop",
    "nats": "nats://nats.example:4222?stream=SHOP&subject_prefix=shop",
    "redis": "redis://:s3cret-pw@redis.example:6379/2?stream=shop:events",
    "kafka": "kafka://k1.example:9092,k2.example:9093?topic=shop.events",
}
CORRELATION_ID = "0193a0b4-0000-7000-8000-000000000001"


def _samples() -> dict[str, tuple[IntegrationEvent, str]]:
    from examples.ecommerce.catalog.contracts import ProductUpdatedIntegrationEvent
    from examples.ecommerce.ordering.contracts import OrderConfirmedIntegrationEvent, OrderLine

    return {
        "catalog.product.updated.v1": (
            ProductUpdatedIntegrationEvent(
                product_id="p-1",
                name="Desk lamp",
                price=Decimal("19.90"),
                on_sale=True,
                recommended_with=["p-2"],
            ),
            "catalog",
        ),
        "ordering.order.confirmed.v1": (
            OrderConfirmedIntegrationEvent(
                order_id="o-1",
                user_id="u-1",
                email="ada@example.com",
                lines=[OrderLine(product_id="p-1", quantity=2, unit_price=Decimal("19.90"))],
                total=Decimal("39.80"),
            ),
            "ordering",
        ),
    }


def _event(contract: IntegrationEvent, source: str) -> CloudEvent:
    row = outbox_row(
        contract,
        source=source,
        correlation_id=CORRELATION_ID,
        causation_id=None,
        created_at=datetime.now(UTC),
    )
    return cloud_event_from_row(row)


def _binary(event: CloudEvent) -> dict[str, dict[str, Any]]:
    body, properties = rabbitmq._encode(event.source, event)
    encoded = {"rabbitmq": (dict(properties.headers or {}), body)}
    encoded["nats"] = nats_publish.encode(event)
    encoded["kafka"] = encode_binary(event, prefix=kafka.HEADER_PREFIX)  # as publish_batch
    return {
        broker: {"headers": headers, "body": json.loads(body)}
        for broker, (headers, body) in encoded.items()
    }


def main() -> None:
    from examples.ecommerce.system import system

    documents = {
        broker: asyncapi_document(list(system), broker_url=url) for broker, url in BROKERS.items()
    }
    samples = {}
    for message, (contract, source) in _samples().items():
        event = _event(contract, source)
        samples[message] = {
            "binary": _binary(event),
            "structured": json.loads(encode_structured(event)),
        }
    print(json.dumps({"documents": documents, "samples": samples}))


if __name__ == "__main__":
    main()
