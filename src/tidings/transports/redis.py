"""Redis Streams transport (redis-py's asyncio client).

URL: ``redis://[user:password@]host:port/db`` (or ``rediss://`` for TLS); its query
options (``stream``, ``maxlen``, ``claim_idle_ms``, ``block_ms``, ``count``, TLS files)
are described in :mod:`tidings.transports.redis_options`.

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

Confirmation
    ``publish_batch`` sends the whole batch as one call of a small server-side script
    that runs one ``XADD`` per event (and one ``XTRIM`` when ``maxlen`` is set). Its
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
    no longer holds. Run one consumer per context when order matters (guarantee 4);
    sharding the stream by key, with each consumer owning shards, would lift that
    limit and is not implemented. A nacked or abandoned entry comes back after
    entries read since, as on every broker.

Redelivery
    Each ``subscribe`` is a fresh consumer name. ``nack(requeue=True)`` marks the
    entry as long idle so the next ``XAUTOCLAIM`` of any consumer of the group takes
    it at once; closing a subscription does the same for its unacknowledged entries;
    a consumer killed outright loses its entries to ``XAUTOCLAIM`` after
    ``claim_idle_ms``.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import AsyncGenerator, Collection, Sequence
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from tidings.contracts.cloudevents import CloudEvent, encode_structured
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
from tidings.transports.redis_consuming import (
    GIVE_BACK_IDLE_MS,
    SWEEP_CONSUMERS,
    Entry,
    Subscription,
    Token,
    call,
    give_back,
    headers,
    token_of,
)
from tidings.transports.redis_options import DEFAULT_STREAM, RedisOptions
from tidings.transports.redis_publish import ADD_BATCH, add_batch

__all__ = ["DEFAULT_STREAM", "RedisOptions", "RedisTransport"]

# The publishing script under its former name, which the AsyncAPI tests read to check
# that the documented entry fields are the ones the script writes.
_ADD_BATCH = ADD_BATCH


class RedisTransport(Transport):
    """Integration events on one Redis stream, one consumer group per consuming context."""

    schemes = ("redis", "rediss")
    routes_by_type = False

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.options, self._client_url = RedisOptions.split_url(url)
        self._client: Redis | None = None

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
        secure: dict[str, Any] = {}
        if tls is not None:
            # redis-py builds the SSL context itself; these are tidings' rules for it.
            secure = {
                "ssl_ca_certs": tls.ca,
                "ssl_certfile": tls.cert,
                "ssl_keyfile": tls.key,
                "ssl_cert_reqs": "required",
                "ssl_check_hostname": True,
            }
        client = Redis.from_url(
            self._client_url,
            socket_connect_timeout=5.0,
            socket_timeout=socket_timeout,
            health_check_interval=30,
            **secure,
        )
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
        self._client = client

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def publish_batch(self, source: str, events: Sequence[CloudEvent]) -> Unroutable:
        """Append ``events`` with one script call; a stream keeps them for every group."""
        if not events:
            return NOTHING_UNROUTABLE
        maxlen = self.options.maxlen
        arguments: list[str | bytes] = [source, "" if maxlen is None else str(maxlen)]
        for event in events:
            arguments += (event.type, event.subject or "", event.id, encode_structured(event))
        try:
            added = await self._add_batch(arguments)
        except (RedisError, OSError) as exc:
            raise PublishNotConfirmedError(
                f"Redis did not confirm a batch of {len(events)} events ({exc}); nothing "
                "is lost: retry the whole batch once Redis is reachable (and, should it "
                f"keep failing, check that {self.options.stream!r} is a stream)"
            ) from exc
        if added != len(events):
            raise PublishNotConfirmedError(
                f"Redis added {added} of a batch of {len(events)} events; retry the whole batch"
            )
        return NOTHING_UNROUTABLE

    async def _add_batch(self, arguments: list[str | bytes]) -> Any:
        return await add_batch(self.client, self.options.stream, arguments)

    async def declare_subscription(self, group: str, event_types: Collection[str]) -> None:
        # The group, not the types, is what Redis keeps: filtering happens on read. A
        # group starts at the beginning of the stream: declared after events were
        # published, it still gets every entry the stream holds.
        try:
            await self.client.xgroup_create(self.options.stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise TransportError(
                    f"cannot create consumer group {group!r} on stream "
                    f"{self.options.stream!r}: {exc}; the key must be a stream or absent"
                ) from exc
        except (RedisError, OSError) as exc:
            raise TransportError(
                f"cannot reach Redis to declare group {group!r}: {exc}; retry later"
            ) from exc

    async def delete_subscription(self, group: str) -> None:
        """Destroy the group's consumer group, its pending entries with it."""
        try:
            await self.client.xgroup_destroy(self.options.stream, group)
        except ResponseError:
            return  # no such stream or group: nothing to delete
        except (RedisError, OSError) as exc:
            raise TransportError(
                f"cannot reach Redis to delete group {group!r}: {exc}; retry later"
            ) from exc

    async def subscribe(
        self, group: str, event_types: Collection[str]
    ) -> AsyncGenerator[Delivery, None]:
        wanted = frozenset(event_types)
        await self.declare_subscription(group, wanted)
        state = Subscription(group, f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        await self._sweep(group, only="")
        try:
            while True:
                entries, redelivered = await self._next_entries(state)
                skipped: list[bytes] = []
                matching: list[tuple[bytes, dict[bytes, bytes], str]] = []
                for entry_id, fields in entries:
                    if fields is None:
                        continue  # trimmed away while pending; Redis drops it from the PEL
                    routed = fields.get(b"type", b"").decode(errors="replace")
                    if routed in wanted:
                        matching.append((entry_id, fields, routed))
                    else:
                        skipped.append(entry_id)
                if skipped:
                    await self._call(self.client.xack(self.options.stream, group, *skipped))
                    self.skipped += len(skipped)
                for entry_id, fields, routed in matching:
                    yield Delivery(
                        body=fields.get(b"body", b""),
                        headers=headers(entry_id, fields),
                        redelivered=redelivered,
                        routed_type=routed,
                        _transport_token=Token(state, entry_id),
                        _transport=self,
                    )
        finally:
            if self._client is not None:
                await self._give_back(state)

    async def ack(self, delivery: Delivery) -> None:
        token = token_of(delivery)
        await self._call(
            self.client.xack(self.options.stream, token.subscription.group, token.entry_id)
        )

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """One ``XACK`` per group for all the deliveries."""
        by_group: dict[str, list[bytes]] = {}
        for delivery in deliveries:
            token = token_of(delivery)
            by_group.setdefault(token.subscription.group, []).append(token.entry_id)
        for group, entry_ids in by_group.items():
            await self._call(self.client.xack(self.options.stream, group, *entry_ids))

    async def nack(self, delivery: Delivery, *, requeue: bool = True) -> None:
        token = token_of(delivery)
        if not requeue:
            await self.ack(delivery)
            return
        subscription = token.subscription
        await self._call(
            self.client.xclaim(
                self.options.stream,
                subscription.group,
                subscription.consumer,
                0,
                [token.entry_id],
                idle=GIVE_BACK_IDLE_MS,
                justid=True,
            )
        )
        subscription.claim_due = True

    async def _next_entries(self, state: Subscription) -> tuple[list[Entry], bool]:
        """Abandoned entries first (when a claim is due), else new ones."""
        if state.claim_due or time.monotonic() >= state.next_claim_at:
            reply = await self._call(
                self.client.xautoclaim(
                    self.options.stream,
                    state.group,
                    state.consumer,
                    self.options.claim_idle_ms,
                    start_id=state.claim_cursor,
                    count=self.options.count,
                )
            )
            cursor = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
            claimed: list[Entry] = list(reply[1])
            # A scan ends when the cursor wraps to 0-0; until then keep claiming.
            state.claim_cursor = cursor
            if cursor == "0-0":
                state.claim_due = False
                state.next_claim_at = time.monotonic() + self.options.claim_idle_ms / 2000
            if claimed:
                return claimed, True
        try:
            reply = await self._call(
                self.client.xreadgroup(
                    state.group,
                    state.consumer,
                    {self.options.stream: ">"},
                    count=self.options.count,
                    block=self.options.block_ms,
                )
            )
        except TransportError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # The stream was deleted under us: recreate the group and carry on.
            await self.declare_subscription(state.group, ())
            return [], False
        entries: list[Entry] = []
        for _stream, stream_entries in reply or []:
            entries.extend(stream_entries)
        return entries, False

    async def _give_back(self, state: Subscription) -> None:
        await give_back(self.client, self.options.stream, state, self._stale_after())

    def _stale_after(self) -> int:
        return max(10 * self.options.claim_idle_ms, 300_000)

    async def _sweep(self, group: str, *, only: str) -> None:
        await self._call(
            self.client.eval(
                SWEEP_CONSUMERS, 1, self.options.stream, group, self._stale_after(), only
            )
        )

    async def _call(self, awaitable: Any) -> Any:
        return await call(self.url, awaitable)
