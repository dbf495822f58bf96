"""``tidings asyncapi``: the reference system's AsyncAPI 3.0.0 document, for every broker.

The document is validated with the AsyncAPI project's own parser (``@asyncapi/parser``
on Node.js), and what each transport really writes (its own encoder's headers and
body for a real outbox row) is validated against the document's message schemas.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from examples.ecommerce.catalog.contracts import ProductUpdatedIntegrationEvent
from examples.ecommerce.ordering.contracts import OrderConfirmedIntegrationEvent, OrderLine
from examples.ecommerce.system import system

from tests.support.asyncapi_parser import Report, parse
from tidings import BoundedContext, DomainEvent, DomainEventHandler, IntegrationEvent
from tidings.contracts.asyncapi import asyncapi_document
from tidings.contracts.cloudevents import CloudEvent, encode_binary, encode_structured
from tidings.contracts.envelope import cloud_event_from_row, outbox_row
from tidings.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]
BROKERS = {
    "sqlite": "sqlite:///.tidings-demo/broker.db",
    "rabbitmq": "amqp://shop:s3cret-pw@rabbit.example:5672/shop",
    "nats": "nats://nats.example:4222?stream=SHOP&subject_prefix=shop",
    "redis": "redis://:s3cret-pw@redis.example:6379/2?stream=shop:events",
    "kafka": "kafka://k1.example:9092,k2.example:9093?topic=shop.events",
}


def document(broker: str) -> dict[str, Any]:
    return asyncapi_document(list(system), broker_url=BROKERS[broker])


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Report]:
    """The parser's report on the reference system's document for every broker."""
    return parse({broker: document(broker) for broker in BROKERS}, tmp_path_factory.mktemp("aa"))


@pytest.mark.parametrize("broker", list(BROKERS))
def test_the_reference_system_validates_with_the_asyncapi_parser(
    broker: str, reports: dict[str, Report]
) -> None:
    assert reports[broker]["errors"] == []
    assert reports[broker]["warnings"] == []  # docs/asyncapi.md says so (they would be allowed)


def test_the_parser_does_report_errors(tmp_path: Path) -> None:
    broken = document("rabbitmq")
    broken["operations"]["catalog.send.catalog.product.updated"]["channel"] = {
        "$ref": "#/channels/nowhere"
    }

    report = parse({"broken": broken}, tmp_path)["broken"]

    assert "invalid-ref" in [error["code"] for error in report["errors"]]


@pytest.mark.parametrize(
    ("broker", "address"),
    [
        ("sqlite", "tidings_broker_log"),
        ("rabbitmq", "catalog.product.updated"),
        ("nats", "shop.catalog.catalog.product.updated"),
        ("redis", "shop:events"),
        ("kafka", "shop.events"),
    ],
)
def test_channels_sit_at_the_transports_own_addresses(broker: str, address: str) -> None:
    channel = document(broker)["channels"]["catalog.product.updated"]

    assert channel["address"] == address


def test_rabbitmq_channels_name_the_exchange_and_the_queues() -> None:
    url = "amqp://guest:guest@localhost/?exchange=shop.integration"
    doc = asyncapi_document(list(system), broker_url=url)

    binding = doc["channels"]["catalog.product.updated"]["bindings"]["amqp"]
    assert binding["is"] == "routingKey"
    assert binding["exchange"]["name"] == "shop.integration"
    assert binding["exchange"]["type"] == "topic"
    receive = doc["operations"]["basket.receive.catalog.product.updated"]
    assert receive["x-tidings-subscription"] == "quorum queue tidings.basket"


def test_kafka_operations_name_the_consumer_group_and_servers_every_bootstrap_host() -> None:
    doc = document("kafka")

    receive = doc["operations"]["payments.receive.ordering.order.confirmed"]
    assert receive["bindings"]["kafka"]["groupId"] == {"type": "string", "enum": ["payments"]}
    assert list(doc["servers"]) == ["kafka-1", "kafka-2"]
    assert [server["host"] for server in doc["servers"].values()] == [
        "k1.example:9092",
        "k2.example:9093",
    ]


class ProductRepriced(DomainEvent):
    product_id: str


class PublishProductUpdatedOnProductRepriced(DomainEventHandler):
    publishes = (ProductUpdatedIntegrationEvent,)

    def handle(self, event: ProductRepriced) -> None: ...


def test_kafka_channels_bind_the_topic() -> None:
    channel = document("kafka")["channels"]["catalog.product.updated"]

    assert channel["bindings"]["kafka"] == {
        "topic": "shop.events",
        "partitions": 8,
        "replicas": 1,
        "bindingVersion": "0.5.0",
    }


def test_structured_mode_headers_are_the_fields_kept_beside_the_body() -> None:
    from tidings.transports import redis, sqlite

    redis_fields = document("redis")["components"]["messages"]["catalog.product.updated.v1"]
    sqlite_columns = document("sqlite")["components"]["messages"]["catalog.product.updated.v1"]

    assert list(redis_fields["headers"]["properties"]) == ["type", "source", "key", "id"]
    assert "'type', ARGV[i], 'source', source,\n               'key', ARGV[i + 1], 'id'" in (
        redis._ADD_BATCH
    )
    assert list(sqlite_columns["headers"]["properties"]) == ["type", "source", "partition_key"]
    assert "(partition_no, source, type, partition_key, body, created_at)" in (
        Path(sqlite.__file__).read_text()
    )


def test_servers_carry_host_port_and_path_only() -> None:
    assert document("redis")["servers"] == {
        "redis": {"host": "redis.example:6379", "protocol": "redis", "pathname": "/2"}
    }
    assert document("rabbitmq")["servers"]["rabbitmq"]["host"] == "rabbit.example:5672"
    assert document("sqlite")["servers"]["sqlite"]["pathname"] == "/.tidings-demo/broker.db"


def test_nats_subject_uses_a_wildcard_when_several_contexts_publish_a_type() -> None:
    second = BoundedContext("catalog.eu")
    second.subscribe(PublishProductUpdatedOnProductRepriced())
    doc = asyncapi_document([system.context("catalog"), second], broker_url="nats://x:4222")

    assert doc["channels"]["catalog.product.updated"]["address"] == (
        "tidings.*.catalog.product.updated"
    )
    assert set(doc["operations"]) >= {
        "catalog.send.catalog.product.updated",
        "catalog.eu.send.catalog.product.updated",
    }


@pytest.mark.parametrize("broker", list(BROKERS))
def test_no_password_reaches_the_document(broker: str) -> None:
    text = json.dumps(document(broker))

    assert "s3cret" not in text
    assert "shop:s3cret" not in text


def test_send_and_receive_operations_follow_the_handlers() -> None:
    operations = document("sqlite")["operations"]

    senders = {op["x-tidings-context"] for op in operations.values() if op["action"] == "send"}
    receivers = {
        op["x-tidings-context"]
        for op in operations.values()
        if op["action"] == "receive" and op["channel"]["$ref"].endswith("ordering.order.confirmed")
    }
    assert senders == {"catalog", "identity", "ordering", "payments", "inventory"}
    assert receivers == {"payments", "inventory", "notifications"}
    send = operations["catalog.send.catalog.product.updated"]
    assert send["x-tidings-handlers"] == [
        "examples.ecommerce.catalog.application."
        "PublishUpdatedProductIntegrationEventOnProductPutOnSale"
    ]


def test_contexts_on_different_brokers_need_an_explicit_broker() -> None:
    one = BoundedContext("one", broker_url="sqlite:///one.db")
    two = BoundedContext("two", broker_url="sqlite:///two.db")

    with pytest.raises(ConfigurationError, match="--broker"):
        asyncapi_document([one, two])
    assert asyncapi_document([one, two], broker_url="sqlite:///one.db")["servers"]


def test_an_in_memory_broker_has_nothing_to_describe() -> None:
    with pytest.raises(ConfigurationError, match="memory://"):
        asyncapi_document(list(system), broker_url="memory://")


# --- what the transports write fits the document ----------------------------------------


def _event(contract: IntegrationEvent, source: str) -> CloudEvent:
    row = outbox_row(
        contract,
        source=source,
        correlation_id="0193a0b4-0000-7000-8000-000000000001",
        causation_id=None,
        created_at=datetime.now(UTC),
    )
    return cloud_event_from_row(row)


SAMPLES: list[tuple[str, IntegrationEvent, str]] = [
    (
        "catalog.product.updated.v1",
        ProductUpdatedIntegrationEvent(
            product_id="p-1",
            name="Desk lamp",
            price=Decimal("19.90"),
            on_sale=True,
            recommended_with=["p-2"],
        ),
        "catalog",
    ),
    (
        "ordering.order.confirmed.v1",
        OrderConfirmedIntegrationEvent(
            order_id="o-1",
            user_id="u-1",
            email="ada@example.com",
            lines=[OrderLine(product_id="p-1", quantity=2, unit_price=Decimal("19.90"))],
            total=Decimal("39.80"),
        ),
        "ordering",
    ),
]


def _validate(doc: dict[str, Any], pointer: str, instance: Any) -> None:
    """Validate against the schema at ``pointer``, resolving refs within the document."""
    schema = {**doc, "$ref": pointer}
    jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(instance)


def _binary_headers(broker: str, event: CloudEvent) -> tuple[dict[str, Any], bytes]:
    if broker == "rabbitmq":
        from tidings.transports import rabbitmq

        body, properties = rabbitmq._encode(event.source, event)
        assert properties.content_type == "application/json"
        return dict(properties.headers or {}), body
    if broker == "nats":
        from tidings.transports import nats

        headers, body = nats._encode(event)
        return headers, body
    from tidings.transports import kafka

    return encode_binary(event, prefix=kafka.HEADER_PREFIX)


@pytest.mark.parametrize("broker", ["rabbitmq", "nats", "kafka"])
@pytest.mark.parametrize(("message", "contract", "source"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_binary_mode_headers_and_body_fit_the_message(
    broker: str, message: str, contract: IntegrationEvent, source: str
) -> None:
    doc = document(broker)
    headers, body = _binary_headers(broker, _event(contract, source))

    _validate(doc, f"#/components/messages/{message}/headers", headers)
    _validate(doc, f"#/components/messages/{message}/payload", json.loads(body))
    location = doc["components"]["correlationIds"]["correlationId"]["location"]
    assert headers[location.split("#/", 1)[1]] == "0193a0b4-0000-7000-8000-000000000001"


@pytest.mark.parametrize("broker", ["sqlite", "redis"])
@pytest.mark.parametrize(("message", "contract", "source"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_structured_mode_envelope_fits_the_message(
    broker: str, message: str, contract: IntegrationEvent, source: str
) -> None:
    doc = document(broker)
    envelope = json.loads(encode_structured(_event(contract, source)))

    _validate(doc, f"#/components/messages/{message}/payload", envelope)
    assert doc["components"]["correlationIds"]["correlationId"]["location"] == (
        "$message.payload#/correlationid"
    )


def test_a_payload_missing_a_field_does_not_fit() -> None:
    doc = document("kafka")
    payload = json.loads(SAMPLES[0][1].model_dump_json(exclude={"event_id", "occurred_at"}))
    del payload["price"]

    with pytest.raises(jsonschema.ValidationError, match="'price' is a required property"):
        _validate(doc, "#/components/messages/catalog.product.updated.v1/payload", payload)


# --- the command -----------------------------------------------------------------------


def _tidings(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tidings", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_command_writes_the_document_to_a_file(tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.json"
    result = _tidings(
        "asyncapi", "examples.ecommerce.system", "--broker", BROKERS["redis"], "--out", str(out)
    )

    assert result.returncode == 0, result.stderr
    written = json.loads(out.read_text())
    assert written == document("redis")
    assert "6 channels" in result.stderr


def test_the_command_prints_to_stdout_and_takes_several_contexts() -> None:
    result = _tidings(
        "asyncapi",
        "examples.ecommerce.catalog:context",
        "examples.ecommerce.basket:context",
        "--title",
        "catalog and basket",
    )

    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] == "catalog and basket"
    assert set(doc["channels"]) == {"catalog.product.updated", "catalog.product.price_changed"}


def test_the_command_exits_2_on_a_broker_it_cannot_describe() -> None:
    result = _tidings("asyncapi", "examples.ecommerce.system", "--broker", "memory://")

    assert result.returncode == 2
    assert "memory://" in result.stderr
