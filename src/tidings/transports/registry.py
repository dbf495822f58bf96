"""Choosing a transport by URL scheme; broker clients are imported only when used."""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

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
