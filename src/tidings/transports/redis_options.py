"""The Redis Streams transport's settings: the ``redis://`` URL's own query options.

URL: ``redis://[user:password@]host:port/db`` (or ``rediss://`` for TLS) with optional
query parameters, every other query parameter going to redis-py unchanged:

``stream`` (default ``tidings:events``)
    The stream key holding every context's integration events.
``maxlen`` (default: no trimming)
    Approximate ``MAXLEN ~`` cap applied after every published batch. Trimming does
    not look at consumer groups: an entry a slow group has not read yet is dropped
    all the same, so set it well above the largest backlog a consumer may accumulate.
``claim_idle_ms`` (default 30000)
    A delivery neither acked nor nacked for this long is taken over by another
    consumer of the group (``XAUTOCLAIM``): the crash-recovery delay.
``block_ms`` (default 1000)
    How long one ``XREADGROUP`` waits for new entries; also the cadence at which a
    consumer looks for abandoned entries.
``count`` (default 100)
    Entries fetched per read.
``shards`` (default 1)
    Split the stream into this many shard streams ``<stream>:0`` .. ``<stream>:<N-1>``
    by the partition key (``partition_slot(key) % N``), so that several consumers of
    a group can share the work and keep per-key order, each reading the shards it
    leased (:mod:`tidings.transports.redis_shards`). 1 is the single ``<stream>`` of
    an unsharded deployment. Every publisher and consumer of the stream must give the
    same count: it is recorded in Redis (``<stream>:shards``) and a URL that disagrees
    is refused.
``ca``, ``cert``, ``key`` (``rediss://`` only)
    TLS: the CA file the server's certificate must chain to (else the system's CAs)
    and a client certificate and key; the certificate must name the URL's host. A
    certificate that does not verify raises :class:`~tidings.errors.TlsError`
    within seconds (``docs/tls.md``).

Kept apart from the transport because the benchmarks read the same options without
connecting through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tidings.errors import ConfigurationError
from tidings.redaction import redact
from tidings.tls import TlsSettings

DEFAULT_STREAM = "tidings:events"


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """The tidings-specific settings of a ``redis://`` URL (see the module docs)."""

    stream: str = DEFAULT_STREAM
    maxlen: int | None = None
    claim_idle_ms: int = 30_000
    block_ms: int = 1_000
    count: int = 100
    shards: int = 1
    tls: TlsSettings | None = None  # set for rediss://

    @property
    def streams(self) -> tuple[str, ...]:
        """The stream keys events go to: ``stream`` alone, or one per shard."""
        if self.shards == 1:
            return (self.stream,)
        return tuple(f"{self.stream}:{shard}" for shard in range(self.shards))

    @property
    def shards_key(self) -> str:
        """The key recording a sharded stream's shard count (never set when unsharded)."""
        return f"{self.stream}:shards"

    @classmethod
    def split_url(cls, url: str) -> tuple[RedisOptions, str]:
        """The options found in ``url`` and the URL left for redis-py."""
        parts = urlsplit(url)
        ours: dict[str, str] = {}
        theirs: list[tuple[str, str]] = []
        tls, query = TlsSettings.split(parse_qsl(parts.query, keep_blank_values=True))
        if tls.given and parts.scheme != "rediss":
            raise ConfigurationError(
                f"?ca=/?cert= in {redact(url)!r} need TLS: write rediss:// instead of redis://"
            )
        tls.check_files()
        for name, value in query:
            if name in _OPTION_NAMES:
                ours[name] = value
            else:
                theirs.append((name, value))
        try:
            options = cls(
                stream=ours.get("stream", DEFAULT_STREAM),
                maxlen=int(ours["maxlen"]) if ours.get("maxlen") else None,
                claim_idle_ms=int(ours.get("claim_idle_ms", 30_000)),
                block_ms=int(ours.get("block_ms", 1_000)),
                count=int(ours.get("count", 100)),
                shards=int(ours.get("shards", 1)),
                tls=tls if parts.scheme == "rediss" else None,
            )
        except ValueError as exc:
            raise ConfigurationError(
                f"invalid Redis transport option in {redact(url)!r}: {exc}; "
                "maxlen, claim_idle_ms, block_ms, count and shards are integers"
            ) from exc
        if not options.stream:
            raise ConfigurationError("the Redis transport needs a non-empty ?stream= name")
        if options.shards < 1:
            raise ConfigurationError(
                f"?shards={options.shards} in {redact(url)!r}: a stream has at least one shard"
            )
        return options, urlunsplit(parts._replace(query=urlencode(theirs)))


_OPTION_NAMES = frozenset({"stream", "maxlen", "claim_idle_ms", "block_ms", "count", "shards"})
