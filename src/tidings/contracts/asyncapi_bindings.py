"""Where each transport really puts an integration event, for the AsyncAPI document.

Every name here comes from the transport itself: the URL is parsed by the transport's
own class (so ``?exchange=``, ``?subject_prefix=``, ``?stream=``, ``?topic=`` change
the document exactly as they change the wire) and addresses are built by the
transport's own naming functions. Describing a broker therefore needs its extra
installed, as using it does.

==========  =================================  =====================  ==================
transport   channel address                    CloudEvents mode       attributes
==========  =================================  =====================  ==================
RabbitMQ    routing key = event type, on the   binary                 ``cloudEvents:*``
            topic exchange (``?exchange=``)                           headers
NATS        ``<prefix>.<source>.<type>``       binary                 ``ce-*`` headers
Kafka       the topic (``?topic=``)            binary                 ``ce_*`` headers
Redis       the stream key (``?stream=``)      structured (``body``)  in the envelope
SQLite      the ``tidings_broker_log`` table   structured (``body``)  in the envelope
==========  =================================  =====================  ==================

Passwords never reach the document: servers carry host, port and path only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

from tidings.contracts.cloudevents import JSON_CONTENT_TYPE, STRUCTURED_CONTENT_TYPE
from tidings.errors import ConfigurationError
from tidings.transports.registry import open_transport

Json = dict[str, Any]

#: CloudEvents attributes tidings always writes, and the optional ones (see cloudevents).
REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type", "time", "subject", "correlationid")
OPTIONAL_ATTRIBUTES = ("causationid", "traceparent", "tracestate")


_FIELD_MEANINGS = {
    "type": "the event type (CloudEvents type)",
    "source": "the producing context (CloudEvents source)",
    "key": "the partition key (CloudEvents subject)",
    "partition_key": "the partition key (CloudEvents subject)",
    "id": "the event id (CloudEvents id)",
}


def _fields(names: Sequence[str]) -> dict[str, Json]:
    return {
        name: {"type": "string", "description": f"{_FIELD_MEANINGS[name]}, kept beside the body"}
        for name in names
    }


class BrokerLayout:
    """How one broker carries tidings' integration events, as AsyncAPI needs it.

    ``mode`` is ``"binary"`` (attributes as headers named ``header_prefix`` +
    attribute, the payload as body) or ``"structured"`` (one JSON CloudEvent as body,
    beside a few fields the broker keeps next to it, given as ``extra_headers``).
    """

    protocol: ClassVar[str]
    mode: ClassVar[str] = "binary"
    header_prefix: ClassVar[str] = ""
    #: Whether ``datacontenttype`` travels as a ``content-type`` header.
    content_type_header: ClassVar[bool] = True
    extra_headers: ClassVar[dict[str, Json]] = {}

    def __init__(self, url: str, transport: Any) -> None:
        self.url = url
        # Not connected: only its parsed URL options (each class has its own) are read.
        self.options: Any = transport.options
        self.transport = transport

    @property
    def content_type(self) -> str:
        """The content type of the message body."""
        return JSON_CONTENT_TYPE if self.mode == "binary" else STRUCTURED_CONTENT_TYPE

    @property
    def servers(self) -> dict[str, Json]:
        """The AsyncAPI servers: host:port (and path), never credentials."""
        raise NotImplementedError

    @property
    def description(self) -> str:
        """One sentence on the topology, for people reading the document."""
        raise NotImplementedError

    def address(self, event_type: str, producers: Sequence[str]) -> str:
        """The channel address of ``event_type`` published by the contexts ``producers``."""
        raise NotImplementedError

    def subscription(self, group: str) -> str:
        """The broker-side name of consuming context ``group``'s durable subscription."""
        raise NotImplementedError

    def channel_bindings(self) -> Json | None:
        """The protocol's channel binding, where it has one worth stating."""
        return None

    def message_bindings(self, event_type: str) -> Json | None:
        """The protocol's message binding."""
        return None

    def operation_bindings(self, action: str, group: str | None) -> Json | None:
        """The protocol's binding of a ``send`` or ``receive`` (of ``group``) operation."""
        return None


class _RabbitMQ(BrokerLayout):
    protocol = "amqp"
    header_prefix = "cloudEvents:"
    # datacontenttype travels as the AMQP content_type property, not a header.
    content_type_header = False

    @property
    def servers(self) -> dict[str, Json]:
        scheme = urlsplit(self.url).scheme.lower()
        default_port = 5671 if scheme == "amqps" else 5672
        server = _server(self.url, default_port, scheme)
        return {"rabbitmq": {**server, "protocolVersion": "0-9-1"}}

    @property
    def description(self) -> str:
        if self.options.shards > 1:
            return (
                f"RabbitMQ: topic exchange {self.options.exchange!r}, the event type as "
                f"routing key; each consuming context has {self.options.shards} quorum "
                "queues tidings.<group>.<shard>, fed by the direct exchange "
                "tidings.<group>.shards on the partition key's bucket (the routing key "
                "tidings.bucket.<crc32(key) % 256> in each message's BCC header; bucket b "
                "belongs to shard b % N)."
            )
        return (
            f"RabbitMQ: topic exchange {self.options.exchange!r}, the event type as "
            "routing key, one quorum queue tidings.<group> per consuming context."
        )

    def address(self, event_type: str, producers: Sequence[str]) -> str:
        from tidings.transports.rabbitmq import _routing_key

        return _routing_key(event_type)

    def subscription(self, group: str) -> str:
        from tidings.transports.rabbitmq_options import queue_name, shard_queue_name

        if self.options.shards > 1:
            last = shard_queue_name(group, self.options.shards - 1)
            return f"quorum queues {shard_queue_name(group, 0)} .. {last} (one per shard)"
        return f"quorum queue {queue_name(group)}"

    def channel_bindings(self) -> Json:
        vhost = unquote(urlsplit(self.url).path[1:]) or "/"
        exchange = {
            "name": self.options.exchange,
            "type": "topic",
            "durable": True,
            "autoDelete": False,
            "vhost": vhost,
        }
        return {"amqp": {"is": "routingKey", "exchange": exchange, "bindingVersion": "0.3.0"}}

    def message_bindings(self, event_type: str) -> Json:
        return {"amqp": {"messageType": event_type, "bindingVersion": "0.3.0"}}

    def operation_bindings(self, action: str, group: str | None) -> Json:
        if action == "send":  # persistent, and dropped when no queue is bound (fan-out to 0)
            return {"amqp": {"deliveryMode": 2, "mandatory": False, "bindingVersion": "0.3.0"}}
        return {"amqp": {"ack": True, "bindingVersion": "0.3.0"}}


class _Nats(BrokerLayout):
    protocol = "nats"
    header_prefix = "ce-"
    extra_headers: ClassVar[dict[str, Json]] = {
        "Nats-Msg-Id": {
            "type": "string",
            "description": "the event id: JetStream drops a copy published again within "
            "the stream's duplicate window",
        }
    }

    @property
    def servers(self) -> dict[str, Json]:
        return {"nats": _server(self.url, 4222, "nats")}

    @property
    def description(self) -> str:
        prefix = self.options.subject_prefix
        if self.options.shards > 1:
            return (
                f"NATS JetStream: stream {self.options.stream!r} capturing '{prefix}.>', "
                f"subjects {prefix}.<source>.<shard>.<type> ({self.options.shards} shards "
                "by the partition key), a durable pull consumer per consuming context "
                "and shard."
            )
        return (
            f"NATS JetStream: stream {self.options.stream!r} capturing '{prefix}.>', "
            f"subjects {prefix}.<source>.<type>, a durable pull consumer per consuming context."
        )

    def address(self, event_type: str, producers: Sequence[str]) -> str:
        from tidings.transports.nats_options import context_token, event_subject, sharded_subject

        # One producer: its own subject; otherwise the filter consumers use.
        source = context_token(producers[0]) if len(producers) == 1 else "*"
        if self.options.shards > 1:  # any shard: the key picks it
            return sharded_subject(self.options.subject_prefix, source, "*", event_type)
        return event_subject(self.options.subject_prefix, source, event_type)

    def subscription(self, group: str) -> str:
        from tidings.transports.nats_options import durable_name, shard_durable

        if self.options.shards > 1:
            first, last = shard_durable(group, 0), shard_durable(group, self.options.shards - 1)
            return f"durable consumers {first} .. {last} (one per shard) on {self.options.stream}"
        return f"durable consumer {durable_name(group)} on stream {self.options.stream}"


class _Kafka(BrokerLayout):
    protocol = "kafka"
    header_prefix = "ce_"

    @property
    def servers(self) -> dict[str, Json]:
        hosts = [host.strip() for host in self.options.bootstrap_servers.split(",")]
        named = {
            f"kafka-{index}" if len(hosts) > 1 else "kafka": host.rpartition("@")[2]
            for index, host in enumerate(hosts, start=1)
            if host
        }
        return {
            name: {"host": host if ":" in host else f"{host}:9092", "protocol": "kafka"}
            for name, host in named.items()
        }

    @property
    def description(self) -> str:
        return (
            f"Kafka: every event on topic {self.options.topic!r}, keyed by its partition "
            "key, one consumer group per consuming context."
        )

    def address(self, event_type: str, producers: Sequence[str]) -> str:
        return str(self.options.topic)

    def subscription(self, group: str) -> str:
        return f"consumer group {group}"

    def channel_bindings(self) -> Json:
        return {
            "kafka": {
                "topic": self.options.topic,
                "partitions": self.options.partitions,
                "replicas": self.options.replication,
                "bindingVersion": "0.5.0",
            }
        }

    def message_bindings(self, event_type: str) -> Json:
        key = {
            "type": "string",
            "description": "the partition key (CloudEvents subject): events of one key keep "
            "their order",
        }
        return {"kafka": {"key": key, "bindingVersion": "0.5.0"}}

    def operation_bindings(self, action: str, group: str | None) -> Json | None:
        if group is None:
            return None
        return {
            "kafka": {"groupId": {"type": "string", "enum": [group]}, "bindingVersion": "0.5.0"}
        }


class _Redis(BrokerLayout):
    protocol = "redis"
    mode = "structured"
    # The XADD fields next to the body (see the script in tidings.transports.redis).
    extra_headers = _fields(("type", "source", "key", "id"))

    @property
    def servers(self) -> dict[str, Json]:
        server = _server(self.url, 6379, "redis")
        path = urlsplit(self.url).path
        return {"redis": {**server, "pathname": path} if path not in ("", "/") else server}

    @property
    def description(self) -> str:
        return (
            f"Redis Streams: every event on stream {self.options.stream!r} as an entry "
            "whose 'body' field is the structured-mode CloudEvent; one consumer group "
            "per consuming context."
        )

    def address(self, event_type: str, producers: Sequence[str]) -> str:
        return str(self.options.stream)

    def subscription(self, group: str) -> str:
        return f"consumer group {group} on stream {self.options.stream}"


class _Sqlite(BrokerLayout):
    protocol = "sqlite"
    mode = "structured"
    # The tidings_broker_log columns next to the body.
    extra_headers = _fields(("type", "source", "partition_key"))

    @property
    def servers(self) -> dict[str, Json]:
        path = self.transport.path
        description = (
            f"tidings' embedded SQLite-file broker in {path} (relative to the processes' "
            "working directory unless it starts with /), shared by the processes of one "
            "machine."
        )
        return {
            "sqlite": {
                "host": "localhost",
                "pathname": "/" + path.lstrip("/"),
                "protocol": "sqlite",
                "description": description,
            }
        }

    @property
    def description(self) -> str:
        return (
            "tidings' embedded SQLite-file broker: every event is a row of the "
            "tidings_broker_log table whose 'body' column is the structured-mode "
            "CloudEvent; one consumer group per consuming context."
        )

    def address(self, event_type: str, producers: Sequence[str]) -> str:
        return "tidings_broker_log"

    def subscription(self, group: str) -> str:
        return f"consumer group {group} (tidings_broker_groups)"


_LAYOUTS: dict[str, type[BrokerLayout]] = {
    "amqp": _RabbitMQ,
    "amqps": _RabbitMQ,
    "nats": _Nats,
    "kafka": _Kafka,
    "redis": _Redis,
    "rediss": _Redis,
    "sqlite": _Sqlite,
}


def broker_layout(url: str) -> BrokerLayout:
    """The layout of the broker at ``url``; a :class:`ConfigurationError` for ``memory://``.

    Raises :class:`~tidings.errors.MissingExtraError` when the transport's client is
    not installed: its URL parsing and naming are the transport's own.
    """
    transport = open_transport(url)
    scheme = urlsplit(url).scheme.lower()
    layout = _LAYOUTS.get(scheme)
    if layout is None:
        raise ConfigurationError(
            f"{scheme}:// has no broker topology to describe; name a broker with --broker "
            "(sqlite:///, amqp://, nats://, redis:// or kafka://)"
        )
    return layout(url, transport)


def _server(url: str, default_port: int, protocol: str) -> Json:
    parts = urlsplit(url)
    host = parts.hostname or "localhost"  # never user:password
    if ":" in host:
        host = f"[{host}]"  # IPv6
    return {"host": f"{host}:{parts.port or default_port}", "protocol": protocol}
