"""Choosing a transport by URL scheme; broker clients are imported only when used."""

from __future__ import annotations

import importlib
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tidings.errors import ConfigurationError, MissingExtraError
from tidings.transports.base import Transport

# scheme -> (module, class, extra that installs its client)
_TRANSPORTS: dict[str, tuple[str, str, str | None]] = {
    "memory": ("tidings.transports.memory", "MemoryTransport", None),
    "sqlite": ("tidings.transports.sqlite", "SqliteTransport", None),
    "amqp": ("tidings.transports.rabbitmq", "RabbitMQTransport", "rabbitmq"),
    "amqps": ("tidings.transports.rabbitmq", "RabbitMQTransport", "rabbitmq"),
    "nats": ("tidings.transports.nats", "NatsTransport", "nats"),
    "redis": ("tidings.transports.redis", "RedisTransport", "redis"),
    "rediss": ("tidings.transports.redis", "RedisTransport", "redis"),
    "kafka": ("tidings.transports.kafka", "KafkaTransport", "kafka"),
    "pubsub": ("tidings.transports.pubsub", "PubSubTransport", "pubsub"),
    "kafkas": ("tidings.transports.kafka", "KafkaTransport", "kafka"),
}

# scheme -> the URL option bounding how many deliveries one consumer holds at once.
PREFETCH_OPTIONS: dict[str, str] = {
    "memory": "prefetch",
    "sqlite": "max_unacked",
    "amqp": "prefetch",
    "amqps": "prefetch",
    "nats": "prefetch",
    "redis": "count",
    "rediss": "count",
    "kafka": "fetch_count",
    "kafkas": "fetch_count",
    "pubsub": "prefetch",
}


def with_prefetch(url: str, prefetch: int) -> str:
    """``url`` with its transport's prefetch option set to ``prefetch``.

    The option has a name of each broker's own (RabbitMQ, NATS and Pub/Sub
    ``prefetch``, Redis ``count``, Kafka ``fetch_count``, the SQLite broker
    ``max_unacked``); this sets the right one, replacing a value the URL had.
    """
    if prefetch < 1:
        raise ConfigurationError(f"prefetch must be at least 1, got {prefetch}")
    parts = urlsplit(url)
    option = PREFETCH_OPTIONS.get(parts.scheme.lower())
    if option is None:
        raise ConfigurationError(f"no transport for {url!r}, so no prefetch to set")
    query = [(name, value) for name, value in parse_qsl(parts.query) if name != option]
    query.append((option, str(prefetch)))
    return urlunsplit(parts._replace(query=urlencode(query)))


def open_transport(url: str) -> Transport:
    """The transport for ``url`` (not connected yet): ``memory://``, ``sqlite:///path``,
    ``amqp://…``, ``nats://…``, ``redis://…``, ``kafka://host:port`` or ``pubsub://PROJECT``;
    with TLS ``amqps://…``, ``nats://…?tls=true``, ``rediss://…`` or ``kafkas://…`` (see
    ``docs/tls.md``)."""
    scheme = urlsplit(url).scheme.lower()
    entry = _TRANSPORTS.get(scheme)
    if entry is None:
        known = ", ".join(sorted({f"{s}://" for s in _TRANSPORTS}))
        raise ConfigurationError(f"no transport for {url!r}; known schemes: {known}")
    module_name, class_name, extra = entry
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if extra is not None and not (exc.name or "").startswith("tidings"):
            raise MissingExtraError(f"the {scheme}:// transport", extra) from exc
        raise
    transport_class: type[Transport] = getattr(module, class_name)
    return transport_class(url)
