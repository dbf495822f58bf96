"""The settings of a ``kafka://`` URL.

URL: ``kafka://host:port[,host:port...]`` (``kafkas://`` for TLS, the ``SSL`` security
protocol) with optional query parameters:

``topic`` (default ``tidings.events``)
    The topic holding every context's integration events.
``partitions`` (default 8), ``replication`` (default 1)
    Used only when tidings creates the missing topic; an existing topic is left as it is.
``idempotence`` (``auto`` by default, ``true`` or ``false``)
    ``auto`` asks for the idempotent producer and, when the broker refuses to hand
    out a producer id, falls back to a plain ``acks=all`` producer with a warning;
    ``true`` makes that refusal an error.
``request_timeout_ms`` (default 30000)
    Upper bound on waiting for the broker, including a publish confirmation.
``client_id`` (default ``tidings``)
``session_timeout_ms`` (default 10000), ``heartbeat_interval_ms`` (default 3000)
    Consumer group liveness: how soon a silent consumer's partitions move to another.
``fetch_count`` (default 500)
    Messages fetched per poll, which is also the commit cadence.
``ca``, ``cert``, ``key`` (``kafkas://`` only)
    TLS: the CA file the brokers' certificates must chain to (else the system's CAs)
    and a client certificate and key; every broker's certificate must name the host
    it is reached at (the bootstrap address, then the advertised listeners). Before
    the Kafka clients start, one TLS handshake with the first bootstrap server checks
    the certificate, so a wrong CA or host name raises
    :class:`~tidings.errors.TlsError` within seconds rather than aiokafka's generic
    bootstrap failure (``docs/tls.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from tidings.errors import ConfigurationError
from tidings.tls import TlsSettings

#: The topic holding every context's integration events unless ``?topic=`` says otherwise.
DEFAULT_TOPIC = "tidings.events"


@dataclass(frozen=True, slots=True)
class KafkaOptions:
    """The settings of a ``kafka://`` URL (see the module docs)."""

    bootstrap_servers: str
    topic: str = DEFAULT_TOPIC
    partitions: int = 8
    replication: int = 1
    idempotence: str = "auto"
    request_timeout_ms: int = 30_000
    client_id: str = "tidings"
    fetch_count: int = 500
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    tls: TlsSettings | None = None  # set for kafkas://

    @classmethod
    def from_url(cls, url: str) -> KafkaOptions:
        """Parse ``url``; raises :class:`ConfigurationError` with what to fix."""
        parts = urlsplit(url)
        if not parts.netloc:
            raise ConfigurationError(
                f"{url!r} names no broker; write kafka://host:port[,host:port...]"
            )
        tls, pairs = TlsSettings.split(parse_qsl(parts.query))
        if tls.given and parts.scheme != "kafkas":
            raise ConfigurationError(
                f"?ca=/?cert= in {url!r} need TLS: write kafkas:// instead of kafka://"
            )
        query = dict(pairs)
        unknown = set(query) - _OPTION_NAMES
        if unknown:
            raise ConfigurationError(
                f"unknown Kafka transport option(s) {sorted(unknown)} in {url!r}; "
                f"known: {sorted(_OPTION_NAMES)}"
            )
        try:
            options = cls(
                bootstrap_servers=parts.netloc,
                topic=query.get("topic", DEFAULT_TOPIC),
                partitions=int(query.get("partitions", 8)),
                replication=int(query.get("replication", 1)),
                idempotence=query.get("idempotence", "auto").lower(),
                request_timeout_ms=int(query.get("request_timeout_ms", 30_000)),
                client_id=query.get("client_id", "tidings"),
                fetch_count=int(query.get("fetch_count", 500)),
                session_timeout_ms=int(query.get("session_timeout_ms", 10_000)),
                heartbeat_interval_ms=int(query.get("heartbeat_interval_ms", 3_000)),
                tls=tls if parts.scheme == "kafkas" else None,
            )
        except ValueError as exc:
            raise ConfigurationError(
                f"invalid Kafka transport option in {url!r}: {exc}; every option but "
                "topic, idempotence and client_id is an integer"
            ) from exc
        if options.idempotence not in ("auto", "true", "false"):
            raise ConfigurationError(
                f"idempotence={options.idempotence!r} in {url!r}; use auto, true or false"
            )
        if not options.topic or options.partitions < 1 or options.replication < 1:
            raise ConfigurationError(
                f"{url!r}: topic must be non-empty, partitions and replication at least 1"
            )
        return options


_OPTION_NAMES = frozenset(
    {
        "topic",
        "partitions",
        "replication",
        "idempotence",
        "request_timeout_ms",
        "client_id",
        "fetch_count",
        "session_timeout_ms",
        "heartbeat_interval_ms",
    }
)
