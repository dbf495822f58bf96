"""The settings of a ``pubsub://PROJECT?options`` URL.

URL options: ``topic``, ``emulator`` (``host:port``), ``prefetch``, ``max_bytes``,
``ack_deadline``, ``max_lease``, ``batch_max_messages`` (100), ``batch_max_latency``
(0.01 s), ``connect_timeout`` (10 s, for admin calls), ``confirm_timeout``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tidings.errors import ConfigurationError

#: The topic every context publishes to unless ``?topic=`` names another.
DEFAULT_TOPIC = "tidings"
# Topic and subscription ids: a letter, then letters, digits and - _ . ~ + %.
_RESOURCE_ID = re.compile(r"[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}")


def valid_resource_id(name: str) -> bool:
    """Whether Pub/Sub accepts ``name`` as a topic or subscription id."""
    return bool(_RESOURCE_ID.fullmatch(name)) and not name.lower().startswith("goog")


@dataclass(frozen=True, slots=True)
class PubSubOptions:
    """The settings read from the URL query string."""

    topic: str = DEFAULT_TOPIC
    emulator: str = ""
    prefetch: int = 1000
    max_bytes: int = 100 * 1024 * 1024
    ack_deadline: int = 10
    max_lease: float = 3600.0
    batch_max_messages: int = 100
    batch_max_latency: float = 0.01
    connect_timeout: float = 10.0
    confirm_timeout: float = 30.0


def parse_url(url: str) -> tuple[str, PubSubOptions]:
    """The project and options of a ``pubsub://`` URL (else a ConfigurationError)."""
    parts = urlsplit(url)
    project = parts.netloc
    if not project or "@" in project or ":" in project:
        raise ConfigurationError(
            f"Pub/Sub URL {url!r} must name the Google Cloud project: pubsub://PROJECT?..."
        )
    ours = dict(parse_qsl(parts.query, keep_blank_values=True))
    known = {f.name: f for f in fields(PubSubOptions)}
    unknown = set(ours) - set(known)
    if unknown:
        raise ConfigurationError(
            f"unknown Pub/Sub URL option(s) {sorted(unknown)}; known: {sorted(known)}"
        )
    values: dict[str, Any] = {}
    try:
        for name, text in ours.items():
            kind = type(getattr(PubSubOptions(), name))
            values[name] = kind(text)
    except ValueError as exc:
        raise ConfigurationError(f"invalid Pub/Sub URL option in {url!r}: {exc}") from exc
    options = PubSubOptions(**values)
    if not valid_resource_id(options.topic):
        raise ConfigurationError(f"?topic={options.topic!r} is not a valid Pub/Sub topic id")
    if not 10 <= options.ack_deadline <= 600:
        raise ConfigurationError("?ack_deadline= must be between 10 and 600 seconds")
    if (
        min(options.prefetch, options.max_bytes, options.batch_max_messages) < 1
        or min(options.max_lease, options.connect_timeout, options.confirm_timeout) <= 0
        or options.batch_max_latency < 0
    ):
        raise ConfigurationError(
            "?prefetch=, ?max_bytes= and ?batch_max_messages= must be at least 1; "
            "?max_lease=, ?connect_timeout= and ?confirm_timeout= positive"
        )
    return project, options
