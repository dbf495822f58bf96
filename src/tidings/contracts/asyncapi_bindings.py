"""Where each transport really puts an integration event, for the AsyncAPI document.

Every name here comes from the transport itself: the URL is parsed by the transport's
own class (so ``?exchange=``, ``?subject_prefix=``, ``?stream=``, ``?topic=`` change
the document exactly as they change the wire) and addresses are built by the
transport's own naming functions. Describing a broker therefore needs its extra
installed, as using it does.

==========  =================================  =====================  ===========
transport   channel address                    CloudEvents mode       headers
==========  =================================  =====================  ===========
RabbitMQ    routing key = event type, on the   binary                 ``cloudEvents:*``
            topic exchange (``?exchange=``)
NATS        ``<prefix>.<source>.<type>``       binary                 ``ce-*``
Kafka       the topic (``?topic=``)            binary                 ``ce_*``
Redis       the stream key (``?stream=``)      structured (``body``)  entry fields
SQLite      the ``tidings_broker_log`` table   structured (``body``)  row columns
==========  =================================  =====================  ===========

Passwords never reach the document: servers carry host, port and path only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from tidings.contracts.cloudevents import JSON_CONTENT_TYPE, STRUCTURED_CONTENT_TYPE
from tidings.errors import ConfigurationError
from tidings.transports.registry import open_transport

Json = dict[str, Any]

#: CloudEvents attributes tidings always writes, and the optional ones (see cloudevents).
REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type", "time", "subject", "correlationid")
OPTIONAL_ATTRIBUTES = ("causationid", "traceparent", "tracestate")


@dataclass(frozen=True, slots=True)
class BrokerLayout:
    """How one broker carries tidings' integration events, as AsyncAPI needs it.

    ``mode`` is ``"binary"`` (attributes as headers named ``header_prefix`` +
    attribute, the payload as body) or ``"structured"`` (one JSON CloudEvent as body,
    beside a few fields the broker keeps next to it, described as headers).
    """

    scheme: str
    protocol: str
    servers: dict[str, Json]
    mode: str
    header_prefix: str = ""
    content_type_header: bool = True
    extra_headers: dict[str, Json] = field(default_factory=dict)
    description: str = ""
    transport: Any = None

    def address(self, event_type: str, producers: Sequence[str]) -> str:
        """The channel address of ``event_type`` published by the contexts ``producers``."""
        scheme = self.scheme
        if scheme in ("amqp", "amqps"):
            from tidings.transports.rabbitmq import _routing_key

            return _routing_key(event_type)
        if scheme == "nats":
            from tidings.transports.nats import _source_token, _subject

            # One producer: its own subject; otherwise the filter consumers use.
            source = _source_token(producers[0]) if len(producers) == 1 else "*"
            return _subject(self.transport.options.subject_prefix, source, event_type)
        if scheme == "kafka":
            return str(self.transport.options.topic)
        if scheme in ("redis", "rediss"):
            return str(self.transport.options.stream)
        return "tidings_broker_log"

    def channel_bindings(self) -> Json | None:
        """The protocol's channel binding (where the transport has one worth stating)."""
        options = self.transport.options
        if self.protocol.startswith("amqp"):
            vhost = unquote(urlsplit(self.transport.url).path[1:]) or "/"
            return {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {
                        "name": options.exchange,
                        "type": "topic",
                        "durable": True,
                        "autoDelete": False,
                        "vhost": vhost,
                    },
                    "bindingVersion": "0.3.0",
                }
            }
        if self.protocol == "kafka":
            return {
                "kafka": {
                    "topic": options.topic,
                    "partitions": options.partitions,
                    "replicas": options.replication,
                    "bindingVersion": "0.5.0",
                }
            }
        return None

    def message_bindings(self, event_type: str) -> Json | None:
        """The protocol's message binding: AMQP's message type, Kafka's key."""
        if self.protocol.startswith("amqp"):
            return {"amqp": {"messageType": event_type, "bindingVersion": "0.3.0"}}
        if self.protocol == "kafka":
            return {
                "kafka": {
                    "key": {
                        "type": "string",
                        "description": "the partition key (CloudEvents subject): "
                        "events of one key keep their order",
                    },
                    "bindingVersion": "0.5.0",
                }
            }
        return None

    def operation_bindings(self, action: str, group: str | None) -> Json | None:
        """The protocol's operation binding: AMQP delivery, Kafka's consumer group."""
        if self.protocol.startswith("amqp"):
            if action == "send":
                return {"amqp": {"deliveryMode": 2, "mandatory": False, "bindingVersion": "0.3.0"}}
            return {"amqp": {"ack": True, "bindingVersion": "0.3.0"}}
        if self.protocol == "kafka" and group is not None:
            return {
                "kafka": {
                    "groupId": {"type": "string", "enum": [group]},
                    "bindingVersion": "0.5.0",
                }
            }
        return None

    def subscription(self, group: str) -> str:
        """The broker-side name of consuming context ``group``'s durable subscription."""
        scheme = self.scheme
        if scheme in ("amqp", "amqps"):
            from tidings.transports.rabbitmq import _queue_name

            return f"quorum queue {_queue_name(group)}"
        if scheme == "nats":
            from tidings.transports.nats import _durable_name

            stream = self.transport.options.stream
            return f"durable consumer {_durable_name(group)} on stream {stream}"
        if scheme == "kafka":
            return f"consumer group {group}"
        if scheme in ("redis", "rediss"):
            return f"consumer group {group} on stream {self.transport.options.stream}"
        return f"consumer group {group} (tidings_broker_groups)"


def broker_layout(url: str) -> BrokerLayout:
    """The layout of the broker at ``url``; a :class:`ConfigurationError` for ``memory://``.

    Raises :class:`~tidings.errors.MissingExtraError` when the transport's client is
    not installed: its URL parsing and naming are the transport's own.
    """
    # Not connected: only its parsed URL options (each class has its own) are read.
    transport: Any = open_transport(url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("amqp", "amqps"):
        return BrokerLayout(
            scheme,
            scheme,
            _servers(
                "rabbitmq", scheme, parts.netloc, 5671 if scheme == "amqps" else 5672, "0-9-1"
            ),
            "binary",
            header_prefix="cloudEvents:",
            # datacontenttype travels as the AMQP content_type property, not a header.
            content_type_header=False,
            description=f"RabbitMQ: topic exchange {transport.options.exchange!r}, the event "
            "type as routing key, one quorum queue tidings.<group> per consuming context.",
            transport=transport,
        )
    if scheme == "nats":
        return BrokerLayout(
            scheme,
            "nats",
            _servers("nats", "nats", parts.netloc, 4222, None),
            "binary",
            header_prefix="ce-",
            extra_headers={
                "Nats-Msg-Id": {
                    "type": "string",
                    "description": "the event id: JetStream drops a copy published again "
                    "within the stream's duplicate window",
                }
            },
            description=f"NATS JetStream: stream {transport.options.stream!r} capturing "
            f"'{transport.options.subject_prefix}.>', subjects "
            f"{transport.options.subject_prefix}.<source>.<type>, a durable pull consumer "
            "per consuming context.",
            transport=transport,
        )
    if scheme == "kafka":
        return BrokerLayout(
            scheme,
            "kafka",
            _kafka_servers(transport.options.bootstrap_servers),
            "binary",
            header_prefix="ce_",
            description=f"Kafka: every event on topic {transport.options.topic!r}, keyed by "
            "its partition key, one consumer group per consuming context.",
            transport=transport,
        )
    if scheme in ("redis", "rediss"):
        return BrokerLayout(
            scheme,
            "redis",
            _servers("redis", scheme, parts.netloc, 6379, None, path=parts.path or None),
            "structured",
            extra_headers=_entry_fields(("type", "source", "key", "id")),
            description=f"Redis Streams: every event on stream {transport.options.stream!r} "
            "as an entry whose 'body' field is the structured-mode CloudEvent; one "
            "consumer group per consuming context.",
            transport=transport,
        )
    if scheme == "sqlite":
        return BrokerLayout(
            scheme,
            "sqlite",
            {
                "sqlite": {
                    "host": "localhost",
                    "pathname": "/" + transport.path.lstrip("/"),
                    "protocol": "sqlite",
                    "description": f"tidings' embedded SQLite-file broker in {transport.path} "
                    "(a path relative to the processes' working directory unless it "
                    "starts with /), shared by the processes of one machine.",
                }
            },
            "structured",
            extra_headers=_entry_fields(("type", "source", "partition_key")),
            description="tidings' embedded SQLite-file broker: every event is a row of the "
            "tidings_broker_log table whose 'body' column is the structured-mode "
            "CloudEvent; one consumer group per consuming context.",
            transport=transport,
        )
    raise ConfigurationError(
        f"{scheme}:// has no broker topology to describe; name a broker with --broker "
        "(sqlite:///, amqp://, nats://, redis:// or kafka://)"
    )


def _servers(
    name: str,
    protocol: str,
    netloc: str,
    default_port: int,
    version: str | None,
    path: str | None = None,
) -> dict[str, Json]:
    host = netloc.rpartition("@")[2]  # never user:password
    if not host:
        host = "localhost"
    if ":" not in host.rpartition("]")[2]:
        host = f"{host}:{default_port}"
    server: Json = {"host": host, "protocol": protocol}
    if version is not None:
        server["protocolVersion"] = version
    if path and path != "/":
        server["pathname"] = path
    return {name: server}


def _kafka_servers(bootstrap: str) -> dict[str, Json]:
    hosts = [host.strip() for host in bootstrap.rpartition("@")[2].split(",") if host.strip()]
    return {
        f"kafka-{index}" if len(hosts) > 1 else "kafka": {
            "host": host if ":" in host else f"{host}:9092",
            "protocol": "kafka",
        }
        for index, host in enumerate(hosts, start=1)
    }


_FIELD_MEANINGS = {
    "type": "the event type (CloudEvents type)",
    "source": "the producing context (CloudEvents source)",
    "key": "the partition key (CloudEvents subject)",
    "partition_key": "the partition key (CloudEvents subject)",
    "id": "the event id (CloudEvents id)",
}


def _entry_fields(names: Sequence[str]) -> dict[str, Json]:
    return {
        name: {"type": "string", "description": f"{_FIELD_MEANINGS[name]}, kept beside the body"}
        for name in names
    }


def content_type(layout: BrokerLayout) -> str:
    """The content type of the message body on ``layout``'s broker."""
    return JSON_CONTENT_TYPE if layout.mode == "binary" else STRUCTURED_CONTENT_TYPE
