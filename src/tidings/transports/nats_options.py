"""The NATS transport's settings and names: URL options, subjects, consumer names.

Kept apart from the transport (and from nats-py) because the AsyncAPI document and the
benchmarks derive the same subjects and names without connecting to a server.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from tidings.errors import ConfigurationError
from tidings.tls import TlsSettings

DEFAULT_SUBJECT_PREFIX = "tidings"
DEFAULT_STREAM = "TIDINGS"

_FORBIDDEN = frozenset("*>")


@dataclass(frozen=True, slots=True)
class NatsOptions:
    """The tidings-specific settings read from the URL query string."""

    stream: str = DEFAULT_STREAM
    subject_prefix: str = DEFAULT_SUBJECT_PREFIX
    replicas: int = 1
    duplicate_window: float = 120.0
    prefetch: int = 256
    ack_wait: float = 30.0
    max_deliver: int = -1
    max_ack_pending: int = 1000
    connect_timeout: float = 5.0
    confirm_timeout: float = 30.0
    tls: TlsSettings | None = None  # set by ?tls=true (or ?ca=, ?cert=)
    shards: int = 1  # > 1: subjects carry a shard token, a consumer per group and shard


def matches(pattern: str, subject: str) -> bool:
    """Whether the NATS subject filter ``pattern`` (``*`` one token, ``>`` the rest)
    takes ``subject``."""
    wanted, tokens = pattern.split("."), subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > index
        if index >= len(tokens) or token not in ("*", tokens[index]):
            return False
    return len(tokens) == len(wanted)


def tokens_ok(text: str) -> bool:
    """Whether ``text`` is dot-separated non-empty subject tokens without wildcards."""
    return bool(text) and not (
        _FORBIDDEN & set(text) or any(char.isspace() for char in text) or "" in text.split(".")
    )


def event_subject(prefix: str, source_token: str, event_type: str) -> str:
    """``<prefix>.<source_token>.<event_type>``; refuses a type that is not plain tokens."""
    if not tokens_ok(event_type):
        raise ConfigurationError(
            f"event type {event_type!r} cannot be part of a NATS subject: use dot-separated "
            "non-empty words without spaces, '*' or '>' (e.g. 'catalog.product.updated')"
        )
    return f"{prefix}.{source_token}.{event_type}"


def sharded_subject(prefix: str, source_token: str, shard: int | str, event_type: str) -> str:
    """``<prefix>.<source_token>.<shard>.<event_type>``: the subject on a sharded stream.

    The shard token comes before the type (which may span several tokens) so that
    ``<prefix>.*.<shard>.>`` takes every type of one shard on a server whose consumers
    have one filter subject (NATS 2.9).
    """
    return event_subject(prefix, f"{source_token}.{shard}", event_type)


def context_token(source: str) -> str:
    """The subject token of context ``source``: its dots become ``_``."""
    token = source.replace(".", "_")
    if not tokens_ok(token):
        raise ConfigurationError(
            f"context name {source!r} cannot be a NATS subject token: use letters, digits, "
            "'-', '_' or '.'"
        )
    return token


def durable_name(group: str) -> str:
    """The name of the group's durable consumer: its dots become ``_``."""
    name = group.replace(".", "_")
    if not tokens_ok(name) or "/" in name or "\\" in name:
        raise ConfigurationError(
            f"group {group!r} cannot name a NATS consumer: use letters, digits, '-', '_' or '.'"
        )
    return name


def shard_durable(group: str, shard: int) -> str:
    """The durable consumer of ``group``'s shard ``shard``: ``<durable_name>-<shard>``."""
    return f"{durable_name(group)}-{shard}"


def parse_url(url: str) -> tuple[list[str], NatsOptions]:
    """Split tidings' options off the URL (nats-py takes no query string)."""
    parts = urlsplit(url)
    tls, query = TlsSettings.split(parse_qsl(parts.query, keep_blank_values=True))
    ours = dict(query)
    wants_tls = ours.pop("tls", "false").strip().lower() in ("1", "true", "yes", "on")
    unknown = set(ours) - set(NatsOptions.__dataclass_fields__) - {"tls"}
    if unknown:
        raise ConfigurationError(
            f"unknown NATS URL option(s) {sorted(unknown)}; known: "
            f"{sorted(NatsOptions.__dataclass_fields__)}"
        )
    defaults = NatsOptions()
    try:
        options = NatsOptions(
            stream=ours.get("stream", defaults.stream),
            subject_prefix=ours.get("subject_prefix", defaults.subject_prefix),
            replicas=int(ours.get("replicas", defaults.replicas)),
            duplicate_window=float(ours.get("duplicate_window", defaults.duplicate_window)),
            prefetch=int(ours.get("prefetch", defaults.prefetch)),
            ack_wait=float(ours.get("ack_wait", defaults.ack_wait)),
            max_deliver=int(ours.get("max_deliver", defaults.max_deliver)),
            max_ack_pending=int(ours.get("max_ack_pending", defaults.max_ack_pending)),
            connect_timeout=float(ours.get("connect_timeout", defaults.connect_timeout)),
            confirm_timeout=float(ours.get("confirm_timeout", defaults.confirm_timeout)),
            tls=tls if wants_tls or tls.given else None,
            shards=int(ours.get("shards", defaults.shards)),
        )
    except ValueError as exc:
        raise ConfigurationError(f"invalid NATS URL option in {describe(url)!r}: {exc}") from exc
    if not tokens_ok(options.stream) or "." in options.stream:
        raise ConfigurationError(f"?stream={options.stream!r} is not a valid stream name")
    if not tokens_ok(options.subject_prefix) or "." in options.subject_prefix:
        raise ConfigurationError(
            f"?subject_prefix={options.subject_prefix!r} must be one subject token"
        )
    if (
        min(options.prefetch, options.replicas, options.shards) < 1
        or min(options.ack_wait, options.connect_timeout, options.confirm_timeout) <= 0
    ):
        raise ConfigurationError(
            "?prefetch=, ?replicas= and ?shards= must be at least 1; ?ack_wait=, ?connect_timeout= "
            "and ?confirm_timeout= must be positive"
        )
    servers = [urlunsplit(parts._replace(query="", fragment=""))]
    return servers, options


def describe(url: str) -> str:
    """host:port for messages: never credentials."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 4222}"
