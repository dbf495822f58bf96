"""Redis Streams transport (redis-py's asyncio client).

URL: ``redis://[user:password@]host:port/db`` (or ``rediss://`` for TLS); its query
options (``stream``, ``maxlen``, ``claim_idle_ms``, ``block_ms``, ``count``,
``shards``, TLS files) are described in :mod:`tidings.transports.redis_options`.

Layout
    One stream holds all events; each entry has the fields ``type``, ``source``,
    ``key`` (the partition key, ``CloudEvent.subject``), ``id`` and ``body`` (the
    CloudEvent in structured JSON mode). Each consuming context is a consumer group
    on that stream created at ``0`` with ``MKSTREAM``: a group can be declared before
    any producer ran, and a group declared late still reads every entry the stream
    holds; it keeps each until it acknowledges it (fan-out). The stream is a shared
    log: entries whose ``type`` field names a type the group does not read are
    acknowledged at once on read, without decoding their body (counted in
    ``Transport.skipped``); the ``type`` field is the delivery's ``routed_type``.
    With ``?shards=N`` (N > 1) the one stream becomes N shard streams
    ``<stream>:0`` .. ``<stream>:<N-1>``, each with the same groups, an event going
    to shard ``partition_slot(key) % N``; N is recorded in ``<stream>:shards``
    (:mod:`tidings.transports.redis_topology`).

Confirmation
    ``publish_batch`` sends the whole batch as one call of a small server-side script
    that runs one ``XADD`` per event (and one ``XTRIM`` per stream written when
    ``maxlen`` is set, so the cap is per shard stream). Its
    reply, the number of entries added, is the confirmation. One reply per batch is
    what makes this fast: with a pipeline of ``XADD`` the client parses a reply per
    event, which costs more than everything else the relay does per event. The
    script is atomic: other producers' entries never land inside a batch. It fails
    as a whole or, should an ``XADD`` fail halfway (a full server), leaves the
    entries before it, which the relay's retry of the whole batch sends again:
    duplicates, never loss. The server needs scripting allowed (``EVALSHA``, and
    ``SCRIPT LOAD`` once), as the consumer's housekeeping does already. Redis
    acknowledges a write once it is in memory: durability across a Redis crash
    depends on the server's AOF/replication settings (``appendfsync always`` for no
    loss), not on tidings.

Ordering
    A stream is totally ordered and the script adds a batch in order, so one
    consumer per group receives each key's events in publication order. Several
    consumers of one group share the entries (competing consumers), which spreads
    load but lets two entries of one key be handled concurrently: per-key order then
    no longer holds. Run one consumer per context when order matters (guarantee 4),
    or shard the stream: with ``?shards=N`` each consumer process reads only the
    shard streams it leased (:meth:`RedisTransport.subscribe_shards`,
    :mod:`tidings.transports.redis_shards`), so a key's events are read by one
    process at a time, in order, through every hand-over. A nacked or abandoned
    entry comes back after entries read since, as on every broker.

Redelivery
    Each ``subscribe`` is a fresh consumer name. ``nack(requeue=True)`` marks the
    entry as long idle so the next ``XAUTOCLAIM`` of any consumer of the group takes
    it at once; closing a subscription does the same for its unacknowledged entries;
    a consumer killed outright loses its entries to ``XAUTOCLAIM`` after
    ``claim_idle_ms`` (a sharded subscription instead takes over a shard's pending
    entries at once when it is granted the shard).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Collection, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from tidings.contracts.cloud_event import CloudEvent
from tidings.redaction import redact
from tidings.tls import tls_failure
from tidings.transports.base import (
    NOTHING_UNROUTABLE,
    Delivery,
    PublishNotConfirmedError,
    Transport,
    TransportError,
    Unroutable,
)
from tidings.transports.cancellation import raise_if_cancelled
from tidings.transports.redis_consuming import (
    GIVE_BACK_IDLE_MS,
    SWEEP_CONSUMERS,
    Entry,
    Subscription,
    Token,
    call,
    claim_abandoned,
    give_back,
    headers,
    read_new,
    token_of,
)
from tidings.transports.redis_options import DEFAULT_STREAM, RedisOptions
from tidings.transports.redis_publish import ADD_BATCH, add_batch, batch_call
from tidings.transports.redis_topology import check_shards, delete_group, mismatch

if TYPE_CHECKING:
    from tidings.transports.sharding import ShardSet

__all__ = ["DEFAULT_STREAM", "RedisOptions", "RedisTransport"]

# The publishing script under its former name, which the AsyncAPI tests read to check
# that the documented entry fields are the ones the script writes.
_ADD_BATCH = ADD_BATCH


class RedisTransport(Transport):
    """Integration events on one Redis stream (or one per shard), one consumer group per
    consuming context."""

    schemes = ("redis", "rediss")
    routes_by_type = False

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.options, self._client_url = RedisOptions.split_url(url)
        self._client: Redis | None = None
        self._client_settings: dict[str, Any] = {}

    @property
    def client(self) -> Redis:
        """The connected redis-py client; raises if :meth:`connect` was not called."""
        if self._client is None:
            raise TransportError(
                "the Redis transport is not connected; use 'async with open_transport(url)'"
            )
        return self._client

    async def connect(self) -> None:
        # A read timeout longer than the blocking read, so that XREADGROUP BLOCK never
        # looks like a dead connection while a stopped server is still noticed.
        socket_timeout = max(10.0, 2 * self.options.block_ms / 1000)
        tls = self.options.tls
        settings: dict[str, Any] = {
            "socket_connect_timeout": 5.0,
            "socket_timeout": socket_timeout,
            "health_check_interval": 30,
        }
        if tls is not None:
            # redis-py builds the SSL context itself; these are tidings' rules for it.
            settings |= {
                "ssl_ca_certs": tls.ca,
                "ssl_certfile": tls.cert,
                "ssl_keyfile": tls.key,
                "ssl_cert_reqs": "required",
                "ssl_check_hostname": True,
            }
        client = Redis.from_url(self._client_url, **settings)
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            await client.aclose()
            parts = urlsplit(self.url)
            refused = tls_failure(exc, f"{parts.hostname}:{parts.port or 6379}")
            if refused is not None:
                raise refused from exc
            raise TransportError(
                f"cannot reach Redis at {redact(self.url)}: {exc}; check that the server "
                "runs and that the URL's host, port and credentials are right"
            ) from exc
        self._client, self._client_settings = client, settings

    def open_reader(self) -> Redis:
        """A client of one connection of its own, for blocking reads that another
        connection can interrupt (``CLIENT UNBLOCK``); the caller closes it."""
        self.client  # noqa: B018 - raises the helpful error when not connected
        return Redis.from_url(
            self._client_url, single_connection_client=True, **self._client_settings
        )

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def publish_batch(self, source: str, events: Sequence[CloudEvent]) -> Unroutable:
        """Append ``events`` with one script call; a stream keeps them for every group."""
        if not events:
            return NOTHING_UNROUTABLE
        keys, arguments = batch_call(self.options, source, events)
        try:
            added = await add_batch(self.client, keys, arguments)
        except ResponseError as exc:
            refused = mismatch(self.options, exc)
            if refused is not None:
                raise refused from exc
            raise self._not_confirmed(len(events), exc) from exc
        except (RedisError, OSError) as exc:
            raise self._not_confirmed(len(events), exc) from exc
        if added != len(events):
            raise PublishNotConfirmedError(
                f"Redis added {added} of a batch of {len(events)} events; retry the whole batch"
            )
        return NOTHING_UNROUTABLE

    def _not_confirmed(self, count: int, exc: Exception) -> PublishNotConfirmedError:
        streams = self.options.streams
        what = repr(streams[0]) if len(streams) == 1 else f"each of {', '.join(streams)}"
        return PublishNotConfirmedError(
            f"Redis did not confirm a batch of {count} events ({exc}); nothing "
            "is lost: retry the whole batch once Redis is reachable (and, should it "
            f"keep failing, check that {what} is a stream)"
        )

    async def declare_subscription(self, group: str, event_types: Collection[str]) -> None:
        # The group, not the types, is what Redis keeps: filtering happens on read. A
        # group starts at the beginning of the stream: declared after events were
        # published, it still gets every entry the stream holds.
        try:
            # Checked first so that a refused URL creates nothing, and for an unsharded
            # URL once more after MKSTREAM: a sharded publisher may have recorded its
            # count in between (once the unsharded stream exists, none can).
            await check_shards(self.client, self.options)
            for stream in self.options.streams:
                await self._create_group(stream, group)
            if self.options.shards == 1:
                await check_shards(self.client, self.options)
        except ResponseError as exc:
            raise TransportError(
                f"cannot declare consumer group {group!r} on {self.options.stream!r}: "
                f"{exc}; the stream keys must be streams or absent"
            ) from exc
        except (RedisError, OSError) as exc:
            raise TransportError(
                f"cannot reach Redis to declare group {group!r}: {exc}; retry later"
            ) from exc

    async def _create_group(self, stream: str, group: str) -> None:
        try:
            await self.client.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise TransportError(
                    f"cannot create consumer group {group!r} on stream "
                    f"{stream!r}: {exc}; the key must be a stream or absent"
                ) from exc

    def shard_count(self, group: str) -> int:
        """The URL's ``?shards=``, which :meth:`declare_subscription` checked against
        the count recorded in Redis."""
        return self.options.shards

    async def delete_subscription(self, group: str) -> None:
        """Destroy the group's consumer group on the stream, or on every shard stream of
        the count Redis records (whatever this URL's ``?shards=``), their pending
        entries with them; when it was a sharded stream's last group, the stream goes
        too, with its count (:func:`~tidings.transports.redis_topology.delete_group`)."""
        try:
            await delete_group(self.client, self.options, group)
        except (RedisError, OSError) as exc:
            raise TransportError(
                f"cannot delete group {group!r} on Redis: {exc}; retry later"
            ) from exc

    def consumer_name(self) -> str:
        """A fresh consumer name: host, process and a random part."""
        return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    async def subscribe(
        self, group: str, event_types: Collection[str]
    ) -> AsyncGenerator[Delivery, None]:
        wanted = frozenset(event_types)
        await self.declare_subscription(group, wanted)
        state = Subscription(group, self.consumer_name())
        streams = self.options.streams
        await self.sweep(group, only="")
        try:
            while True:
                raise_if_cancelled()  # one the last command swallowed (redis-py can)
                for stream, entries, redelivered in await self._next_entries(state, streams):
                    for delivery in await self.deliveries(
                        state, stream, entries, redelivered, wanted
                    ):
                        yield delivery
        finally:
            await self.give_back_all(state)

    def subscribe_shards(
        self, group: str, event_types: Collection[str], max_batch: int, shards: ShardSet
    ) -> AsyncIterator[list[Delivery]]:
        """The shard streams ``shards`` grants, in one ``XREADGROUP``; see
        :mod:`tidings.transports.redis_shards`."""
        from tidings.transports.redis_shards import read_shards

        return read_shards(self, group, frozenset(event_types), max_batch, shards)

    async def deliveries(
        self,
        state: Subscription,
        stream: str,
        entries: Sequence[Entry],
        redelivered: bool,
        wanted: frozenset[str],
    ) -> list[Delivery]:
        """The deliveries of ``entries`` read from ``stream``; those of types the group
        does not read are acknowledged at once (counted in ``skipped``)."""
        skipped: list[bytes] = []
        matching: list[Delivery] = []
        for entry_id, fields in entries:
            if fields is None:
                continue  # trimmed away while pending; Redis drops it from the PEL
            routed = fields.get(b"type", b"").decode(errors="replace")
            if routed not in wanted:
                skipped.append(entry_id)
                continue
            matching.append(
                Delivery(
                    body=fields.get(b"body", b""),
                    headers=headers(entry_id, fields),
                    redelivered=redelivered,
                    routed_type=routed,
                    _transport_token=Token(state, stream, entry_id),
                    _transport=self,
                )
            )
        if skipped:
            await self.call(self.client.xack(stream, state.group, *skipped))
            self.skipped += len(skipped)
        return matching

    async def ack(self, delivery: Delivery) -> None:
        token = token_of(delivery)
        await self.call(self.client.xack(token.stream, token.subscription.group, token.entry_id))

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """One ``XACK`` per group and stream for all the deliveries."""
        by_stream: dict[tuple[str, str], list[bytes]] = {}
        for delivery in deliveries:
            token = token_of(delivery)
            key = (token.subscription.group, token.stream)
            by_stream.setdefault(key, []).append(token.entry_id)
        for (group, stream), entry_ids in by_stream.items():
            await self.call(self.client.xack(stream, group, *entry_ids))

    async def nack(self, delivery: Delivery, *, requeue: bool = True) -> None:
        token = token_of(delivery)
        if not requeue:
            await self.ack(delivery)
            return
        subscription = token.subscription
        await self.call(
            self.client.xclaim(
                token.stream,
                subscription.group,
                subscription.consumer,
                0,
                [token.entry_id],
                idle=GIVE_BACK_IDLE_MS,
                justid=True,
            )
        )
        subscription.claim_due = True

    async def _next_entries(
        self, state: Subscription, streams: Sequence[str]
    ) -> list[tuple[str, list[Entry], bool]]:
        """Abandoned entries first (when a claim is due), else new ones."""
        claimed = await claim_abandoned(self, state, streams, self.options.claim_idle_ms)
        if claimed:
            return claimed
        return await read_new(self, self.client, state, streams, self.options.count)

    async def give_back_all(self, state: Subscription) -> None:
        """Make the consumer's unacknowledged entries of every stream claimable at once."""
        if self._client is None:
            return  # closed: Redis gives nothing back, claim_idle_ms recovers them
        for stream in self.options.streams:
            await give_back(self.client, stream, state, self._stale_after())

    def _stale_after(self) -> int:
        return max(10 * self.options.claim_idle_ms, 300_000)

    async def sweep(self, group: str, *, only: str) -> None:
        """Remove the group's idle consumer names that own nothing (or just ``only``)."""
        for stream in self.options.streams:
            await self.call(
                self.client.eval(SWEEP_CONSUMERS, 1, stream, group, self._stale_after(), only)
            )

    async def call(self, awaitable: Any) -> Any:
        """Await a redis-py command, its failures becoming a :class:`TransportError`."""
        return await call(self.url, awaitable)
