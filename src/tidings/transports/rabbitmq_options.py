"""RabbitMQ transport: URL options, queue and routing-key names, broker error handling.

See :mod:`tidings.transports.rabbitmq` for the topology and the options' meaning.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection

from tidings.errors import ConfigurationError
from tidings.tls import TlsSettings

#: Header prefix of the CloudEvents AMQP binding (binary mode).
HEADER_PREFIX = "cloudEvents:"
DEFAULT_EXCHANGE = "tidings.integration"
QUEUE_PREFIX = "tidings."
#: Each shard is a quorum queue (a Raft group of its own): keep the count modest.
MAX_SHARDS = 256
#: Sharded groups route each event by its bucket, ``partition_slot(key) % BUCKETS``
#: (key: the partition key, else the source), which the publisher names in the
#: message's ``BCC`` header; bucket ``b`` belongs to shard ``b % N``.
BUCKETS = MAX_SHARDS
#: The routing key of each bucket (RabbitMQ routes on ``BCC`` keys and strips the header).
BUCKET_KEYS = tuple(f"tidings.bucket.{bucket}" for bucket in range(BUCKETS))

# Errors the broker client raises when the broker is unreachable, the connection or
# channel dies, or an operation times out: all become TransportError (retryable).
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
)
CLOSE_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class RabbitMQOptions:
    """The tidings-specific settings read from the URL query string."""

    exchange: str = DEFAULT_EXCHANGE
    prefetch: int = 256
    single_active_consumer: bool = False
    delivery_limit: int | None = None
    connect_timeout: float = 5.0
    confirm_timeout: float = 30.0
    shards: int = 1
    tls: TlsSettings | None = None  # set for amqps://


@functools.lru_cache(maxsize=1024)
def routing_key(event_type: str) -> str:
    """The event type as routing key; wildcards would turn bindings into patterns."""
    if (
        not event_type
        or len(event_type.encode()) > 255
        or any(char in event_type for char in "*#")
        or any(char.isspace() for char in event_type)
    ):
        raise ConfigurationError(
            f"event type {event_type!r} cannot be a RabbitMQ routing key: use 1-255 bytes "
            "without spaces, '*' or '#' (e.g. 'catalog.product.updated')"
        )
    return event_type


def queue_name(group: str) -> str:
    """The group's queue ``tidings.<group>``; refuses names RabbitMQ would not take."""
    name = QUEUE_PREFIX + group
    if not group or len(name.encode()) > 255 or any(char.isspace() for char in group):
        raise ConfigurationError(
            f"group {group!r} cannot name a RabbitMQ queue: use a non-empty name without "
            "spaces, at most 247 bytes (it becomes 'tidings.<group>')"
        )
    return name


def shard_exchange_name(group: str) -> str:
    """The direct exchange ``tidings.<group>.shards`` routing a sharded group's buckets."""
    return _checked(queue_name(group) + ".shards", group)


def shard_queue_name(group: str, shard: int) -> str:
    """The quorum queue ``tidings.<group>.<shard>`` of one shard of a group."""
    return _checked(f"{queue_name(group)}.{shard}", group)


def shard_count_marker(group: str, count: int) -> str:
    """The alternate exchange ``tidings.<group>.shards:<count>`` of a sharded group's
    shard exchange: its name records the count."""
    return _checked(f"{shard_exchange_name(group)}:{count}", group)


def _checked(name: str, group: str) -> str:
    if len(name.encode()) > 255:
        raise ConfigurationError(
            f"group {group!r} is too long for a sharded RabbitMQ subscription: "
            f"{name!r} exceeds 255 bytes; use a shorter group name"
        )
    return name


async def close_quietly(closable: AbstractChannel | AbstractConnection) -> bool:
    """Close with a bounded wait; False if the broker did not answer in time."""
    if closable.is_closed:
        return True
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await closable.close()
    except TimeoutError:
        return False
    except BROKER_ERRORS:
        return True  # already closed underneath us: nothing left to release
    return True


def parse_url(url: str) -> tuple[str, RabbitMQOptions]:
    """Split tidings' options off the URL; the rest goes to aio-pika untouched."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    tls, query = TlsSettings.split(parse_qsl(parts.query, keep_blank_values=True))
    if tls.given and parts.scheme != "amqps":
        raise ConfigurationError(
            f"?ca=/?cert= in {describe(url)!r} need TLS: write amqps:// (port 5671 by default)"
        )
    for name, value in query:
        if name in RabbitMQOptions.__dataclass_fields__:
            ours[name] = value
        else:
            theirs.append((name, value))
    defaults = RabbitMQOptions()
    try:
        options = RabbitMQOptions(
            exchange=ours.get("exchange", defaults.exchange),
            prefetch=int(ours.get("prefetch", defaults.prefetch)),
            single_active_consumer=_flag(
                ours.get("single_active_consumer", "false"), "single_active_consumer"
            ),
            delivery_limit=(int(ours["delivery_limit"]) if ours.get("delivery_limit") else None),
            connect_timeout=float(ours.get("connect_timeout", defaults.connect_timeout)),
            confirm_timeout=float(ours.get("confirm_timeout", defaults.confirm_timeout)),
            shards=int(ours.get("shards", defaults.shards)),
            tls=tls if parts.scheme == "amqps" else None,
        )
    except ValueError as exc:
        raise ConfigurationError(
            f"invalid RabbitMQ URL option in {describe(url)!r}: {exc}"
        ) from exc
    if not options.exchange:
        raise ConfigurationError("?exchange= must name an exchange")
    if options.prefetch < 1:
        raise ConfigurationError("?prefetch= must be at least 1")
    if options.connect_timeout <= 0 or options.confirm_timeout <= 0:
        raise ConfigurationError("?connect_timeout= and ?confirm_timeout= must be positive")
    if not 1 <= options.shards <= MAX_SHARDS:
        raise ConfigurationError(
            f"?shards= must be between 1 and {MAX_SHARDS} (each shard is a quorum queue), "
            f"got {options.shards}"
        )
    return urlunsplit(parts._replace(query=urlencode(theirs))), options


def _flag(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"?{name}= must be true or false, got {value!r}")


def describe(url: str) -> str:
    """host:port/vhost for messages: never the password."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.hostname or 'localhost'}{port}{parts.path or '/'}"
