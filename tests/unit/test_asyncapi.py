"""``tidings asyncapi``: the reference system's AsyncAPI 3.0.0 document, for every broker.

The document is validated with the AsyncAPI project's own parser (``@asyncapi/parser``
on Node.js), and what each transport really writes (its own encoder's headers and
body for a real outbox row) is validated against the document's message schemas.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import jsonschema
import pytest

from tests.support.asyncapi_parser import Report, parse
from tests.support.asyncapi_reference import BROKERS, CORRELATION_ID
from tidings import (
    BoundedContext,
    DomainEvent,
    DomainEventHandler,
    IntegrationEvent,
    IntegrationEventHandler,
)
from tidings.contracts.asyncapi import asyncapi_document
from tidings.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    """Documents and encoded samples of the reference system, from a process of its own
    (its contracts share type names with the acceptance tests' contracts)."""
    result = _run("-m", "tests.support.asyncapi_reference")
    assert result.returncode == 0, result.stderr
    found: dict[str, Any] = json.loads(result.stdout)
    return found


@pytest.fixture(scope="module")
def documents(reference: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = reference["documents"]
    return found


@pytest.fixture(scope="module")
def reports(
    documents: dict[str, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Report]:
    """The parser's report on the reference system's document for every broker."""
    return parse(documents, tmp_path_factory.mktemp("asyncapi"))


@pytest.mark.parametrize("broker", list(BROKERS))
def test_the_reference_system_validates_with_the_asyncapi_parser(
    broker: str, reports: dict[str, Report]
) -> None:
    assert reports[broker]["errors"] == []
    assert reports[broker]["warnings"] == []  # docs/asyncapi.md says so (they would be allowed)


def test_the_parser_does_report_errors(
    documents: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    broken = json.loads(json.dumps(documents["rabbitmq"]))
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
def test_channels_sit_at_the_transports_own_addresses(
    documents: dict[str, dict[str, Any]], broker: str, address: str
) -> None:
    channel = documents[broker]["channels"]["catalog.product.updated"]

    assert channel["address"] == address


def test_rabbitmq_channels_name_the_exchange_and_the_queues() -> None:
    url = "amqp://guest:guest@localhost/?exchange=shop.integration"
    doc = asyncapi_document([gadgets, shop], broker_url=url)

    binding = doc["channels"]["tests.asyncapi.gadget.updated"]["bindings"]["amqp"]
    assert binding["is"] == "routingKey"
    assert binding["exchange"]["name"] == "shop.integration"
    assert binding["exchange"]["type"] == "topic"
    receive = doc["operations"]["shop.receive.tests.asyncapi.gadget.updated"]
    assert receive["x-tidings-subscription"] == "quorum queue tidings.shop-group"


def test_kafka_operations_name_the_consumer_group_and_servers_every_bootstrap_host(
    documents: dict[str, dict[str, Any]],
) -> None:
    doc = documents["kafka"]

    receive = doc["operations"]["payments.receive.ordering.order.confirmed"]
    assert receive["bindings"]["kafka"]["groupId"] == {"type": "string", "enum": ["payments"]}
    assert list(doc["servers"]) == ["kafka-1", "kafka-2"]
    assert [server["host"] for server in doc["servers"].values()] == [
        "k1.example:9092",
        "k2.example:9093",
    ]


def test_kafka_channels_bind_the_topic(documents: dict[str, dict[str, Any]]) -> None:
    channel = documents["kafka"]["channels"]["catalog.product.updated"]

    assert channel["bindings"]["kafka"] == {
        "topic": "shop.events",
        "partitions": 8,
        "replicas": 1,
        "bindingVersion": "0.5.0",
    }


def test_structured_mode_headers_are_the_fields_kept_beside_the_body(
    documents: dict[str, dict[str, Any]],
) -> None:
    from tidings.transports import redis
    from tidings.transports.sqlite import storage

    message = "catalog.product.updated.v1"
    redis_fields = documents["redis"]["components"]["messages"][message]["headers"]
    sqlite_columns = documents["sqlite"]["components"]["messages"][message]["headers"]

    assert list(redis_fields["properties"]) == ["type", "source", "key", "id"]
    assert "'type', ARGV[i], 'source', source,\n               'key', ARGV[i + 1], 'id'" in (
        redis._ADD_BATCH
    )
    assert list(sqlite_columns["properties"]) == ["type", "source", "partition_key"]
    assert "(partition_no, source, type, partition_key, body, created_at)" in (
        Path(storage.__file__).read_text()
    )


def test_servers_carry_host_port_and_path_only(documents: dict[str, dict[str, Any]]) -> None:
    assert documents["redis"]["servers"] == {
        "redis": {"host": "redis.example:6379", "protocol": "redis", "pathname": "/2"}
    }
    assert documents["rabbitmq"]["servers"]["rabbitmq"]["host"] == "rabbit.example:5672"
    assert documents["sqlite"]["servers"]["sqlite"]["pathname"] == "/.tidings-demo/broker.db"


@pytest.mark.parametrize("broker", list(BROKERS))
def test_no_password_reaches_the_document(
    documents: dict[str, dict[str, Any]], broker: str
) -> None:
    assert "s3cret" not in json.dumps(documents[broker])


def test_send_and_receive_operations_follow_the_handlers(
    documents: dict[str, dict[str, Any]],
) -> None:
    operations = documents["sqlite"]["operations"]

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


# --- contexts of the test's own ----------------------------------------------------------


class GadgetUpdatedIntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = "tests.asyncapi.gadget.updated"

    gadget_id: str


class GadgetRepriced(DomainEvent):
    gadget_id: str


class PublishGadgetUpdatedOnGadgetRepriced(DomainEventHandler):
    publishes = (GadgetUpdatedIntegrationEvent,)

    def handle(self, event: GadgetRepriced) -> None: ...


class CopyGadgetOnGadgetUpdated(IntegrationEventHandler):
    def handle(self, event: GadgetUpdatedIntegrationEvent) -> None: ...


gadgets = BoundedContext("gadgets", broker_url="sqlite:///gadgets-broker.db")
gadgets.subscribe(PublishGadgetUpdatedOnGadgetRepriced())
gadgets_eu = BoundedContext("gadgets.eu", broker_url="sqlite:///gadgets-broker.db")
gadgets_eu.subscribe(PublishGadgetUpdatedOnGadgetRepriced())
shop = BoundedContext("shop", broker_url="sqlite:///gadgets-broker.db", consumer_group="shop-group")
shop.subscribe(CopyGadgetOnGadgetUpdated())


def test_sharded_subscriptions_are_described_as_their_shards() -> None:
    rabbit = asyncapi_document([gadgets, shop], broker_url="amqp://localhost/?shards=4")
    nats = asyncapi_document([gadgets, shop], broker_url="nats://x:4222?shards=3")

    receive = "shop.receive.tests.asyncapi.gadget.updated"
    assert rabbit["operations"][receive]["x-tidings-subscription"] == (
        "quorum queues tidings.shop-group.0 .. tidings.shop-group.3 (one per shard)"
    )
    assert "direct exchange tidings.<group>.shards" in rabbit["info"]["description"]
    channel = nats["channels"]["tests.asyncapi.gadget.updated"]
    assert channel["address"] == "tidings.gadgets.*.tests.asyncapi.gadget.updated"
    assert nats["operations"][receive]["x-tidings-subscription"] == (
        "durable consumers shop-group-0 .. shop-group-2 (one per shard) on TIDINGS"
    )


def test_nats_subject_uses_a_wildcard_when_several_contexts_publish_a_type() -> None:
    alone = asyncapi_document([gadgets, shop], broker_url="nats://x:4222")
    both = asyncapi_document([gadgets, gadgets_eu, shop], broker_url="nats://x:4222")

    channel = "tests.asyncapi.gadget.updated"
    assert alone["channels"][channel]["address"] == "tidings.gadgets.tests.asyncapi.gadget.updated"
    assert both["channels"][channel]["address"] == "tidings.*.tests.asyncapi.gadget.updated"
    assert set(both["operations"]) == {
        "gadgets.send.tests.asyncapi.gadget.updated",
        "gadgets.eu.send.tests.asyncapi.gadget.updated",
        "shop.receive.tests.asyncapi.gadget.updated",
    }


def test_the_contexts_shared_broker_is_the_default() -> None:
    doc = asyncapi_document([gadgets, shop])

    assert doc["servers"]["sqlite"]["pathname"] == "/gadgets-broker.db"


def test_contexts_on_different_brokers_need_an_explicit_broker() -> None:
    other = BoundedContext("other", broker_url="sqlite:///other.db")

    with pytest.raises(ConfigurationError, match="--broker"):
        asyncapi_document([gadgets, other])
    assert asyncapi_document([gadgets, other], broker_url="sqlite:///other.db")["servers"]


def test_an_in_memory_broker_has_nothing_to_describe() -> None:
    with pytest.raises(ConfigurationError, match="memory://"):
        asyncapi_document([gadgets], broker_url="memory://")


# --- what the transports write fits the document ----------------------------------------

MESSAGES = ["catalog.product.updated.v1", "ordering.order.confirmed.v1"]


def _validate(doc: dict[str, Any], pointer: str, instance: Any) -> None:
    """Validate against the schema at ``pointer``, resolving refs within the document."""
    schema = {**doc, "$ref": pointer}
    jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(instance)


@pytest.mark.parametrize("broker", ["rabbitmq", "nats", "kafka"])
@pytest.mark.parametrize("message", MESSAGES)
def test_binary_mode_headers_and_body_fit_the_message(
    reference: dict[str, Any], broker: str, message: str
) -> None:
    doc = reference["documents"][broker]
    written = reference["samples"][message]["binary"][broker]

    _validate(doc, f"#/components/messages/{message}/headers", written["headers"])
    _validate(doc, f"#/components/messages/{message}/payload", written["body"])
    location = doc["components"]["correlationIds"]["correlationId"]["location"]
    assert written["headers"][location.split("#/", 1)[1]] == CORRELATION_ID


@pytest.mark.parametrize("broker", ["sqlite", "redis"])
@pytest.mark.parametrize("message", MESSAGES)
def test_structured_mode_envelope_fits_the_message(
    reference: dict[str, Any], broker: str, message: str
) -> None:
    doc = reference["documents"][broker]
    envelope = reference["samples"][message]["structured"]

    _validate(doc, f"#/components/messages/{message}/payload", envelope)
    location = doc["components"]["correlationIds"]["correlationId"]["location"]
    assert location == "$message.payload#/correlationid"
    assert envelope["correlationid"] == CORRELATION_ID


def test_a_payload_missing_a_field_does_not_fit(reference: dict[str, Any]) -> None:
    payload = dict(reference["samples"][MESSAGES[0]]["binary"]["kafka"]["body"])
    del payload["price"]

    with pytest.raises(jsonschema.ValidationError, match="'price' is a required property"):
        _validate(
            reference["documents"]["kafka"], f"#/components/messages/{MESSAGES[0]}/payload", payload
        )


# --- the command -----------------------------------------------------------------------


def test_the_command_writes_the_document_to_a_file(
    documents: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    out = tmp_path / "asyncapi.json"
    result = _run(
        "-m",
        "tidings",
        "asyncapi",
        "examples.ecommerce.system",
        "--broker",
        BROKERS["redis"],
        "--out",
        str(out),
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text()) == documents["redis"]
    assert "6 channels, 13 operations" in result.stderr


def test_the_command_prints_to_stdout_and_takes_several_contexts() -> None:
    result = _run(
        "-m",
        "tidings",
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
    result = _run("-m", "tidings", "asyncapi", "examples.ecommerce.system", "--broker", "memory://")

    assert result.returncode == 2
    assert "memory://" in result.stderr
