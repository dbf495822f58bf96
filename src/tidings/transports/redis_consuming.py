"""The Redis transport's consumer side: subscription state, delivery tokens and the
housekeeping of a consumer group (claiming abandoned entries, giving entries back,
sweeping dead consumer names)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tidings.redaction import redact
from tidings.transports.base import Delivery, TransportError

if TYPE_CHECKING:
    from tidings.transports.redis import RedisTransport

#: An idle time larger than any sensible claim_idle_ms, yet smaller than the Unix time
#: in milliseconds: Redis computes "now - IDLE" and ignores values that go negative.
GIVE_BACK_IDLE_MS = 365 * 24 * 3600 * 1000

# Removes consumers that own no pending entry and have been silent for ARGV[2] ms
# (the leftovers of closed or killed subscriptions). Done server-side so that the
# check and the delete are atomic: deleting a consumer drops its pending entries,
# which must never happen to one that just read something.
SWEEP_CONSUMERS = """
local removed = 0
for _, info in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
    local fields = {}
    for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
    local only = ARGV[3]
    if fields['pending'] == 0 and (fields['name'] == only or
            (only == '' and fields['idle'] > tonumber(ARGV[2]))) then
        redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], fields['name'])
        removed = removed + 1
    end
end
return removed
"""

#: One stream entry as redis-py returns it; fields are None for an entry trimmed away
#: while pending.
Entry = tuple[bytes, dict[bytes, bytes] | None]


@dataclass(slots=True)
class Subscription:
    """State of one running ``subscribe``: its consumer name and when to claim next."""

    group: str
    consumer: str
    claim_due: bool = True
    #: The streams a running claim scan has still to go through, with its cursor in each.
    claim_scan: dict[str, str] = field(default_factory=dict)
    next_claim_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Token:
    """What a delivery needs to be acknowledged or given back."""

    subscription: Subscription
    stream: str
    entry_id: bytes


async def autoclaim(
    client: Redis, stream: str, state: Subscription, min_idle_ms: int, cursor: str, count: int
) -> tuple[str, list[Entry]]:
    """One ``XAUTOCLAIM`` step for ``state``'s consumer: the next cursor (``0-0`` once
    the scan of the group's pending entries is over) and the entries taken, in id order."""
    reply = await client.xautoclaim(
        stream, state.group, state.consumer, min_idle_ms, start_id=cursor, count=count
    )
    following = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
    return following, list(reply[1])


def headers(entry_id: bytes, fields: dict[bytes, bytes]) -> dict[str, Any]:
    """An entry's fields but the body, decoded, plus its ``stream-id``."""
    decoded: dict[str, Any] = {
        name.decode(errors="replace"): value.decode(errors="replace")
        for name, value in fields.items()
        if name != b"body"
    }
    decoded["stream-id"] = entry_id.decode()
    return decoded


def token_of(delivery: Delivery) -> Token:
    """The Redis token of ``delivery``; raises if another transport made it."""
    token = delivery._transport_token
    if not isinstance(token, Token):
        raise TransportError("this delivery did not come from a Redis subscription")
    return token


async def call(url: str, awaitable: Awaitable[Any]) -> Any:
    """Await a redis-py command, turning its failures into a :class:`TransportError`."""
    try:
        return await awaitable
    except (RedisError, OSError) as exc:
        raise TransportError(
            f"Redis command failed on {redact(url)}: {exc}; the consumer "
            "should reconnect and resume, unacknowledged entries will be redelivered"
        ) from exc


async def give_back(client: Redis, stream: str, state: Subscription, stale_after: int) -> None:
    """Make this consumer's unacknowledged entries claimable at once, then leave."""
    try:
        pending = await client.xpending_range(
            stream, state.group, "-", "+", 10_000, consumername=state.consumer
        )
        ids: list[Any] = [item["message_id"] for item in pending]
        if ids:
            await client.xclaim(
                stream, state.group, state.consumer, 0, ids, idle=GIVE_BACK_IDLE_MS, justid=True
            )
        await client.eval(SWEEP_CONSUMERS, 1, stream, state.group, stale_after, state.consumer)
    except (RedisError, OSError):
        # Best effort: entries left pending are claimed after claim_idle_ms anyway.
        pass


async def claim_abandoned(
    transport: RedisTransport, state: Subscription, streams: Sequence[str], min_idle_ms: int
) -> list[tuple[str, list[Entry], bool]]:
    """Entries of ``streams`` pending longer than ``min_idle_ms``, taken over by
    this consumer, when a claim is due: one stream's next ``XAUTOCLAIM`` step that
    took something (or none once the scan of every stream is over)."""
    if not state.claim_scan:
        if not (state.claim_due or time.monotonic() >= state.next_claim_at):
            return []
        state.claim_scan = dict.fromkeys(streams, "0-0")
    while state.claim_scan:
        stream, cursor = next(iter(state.claim_scan.items()))
        cursor, claimed = await transport.call(
            autoclaim(transport.client, stream, state, min_idle_ms, cursor, transport.options.count)
        )
        # A stream's scan ends when the cursor wraps to 0-0; until then keep claiming.
        if cursor == "0-0":
            del state.claim_scan[stream]
        else:
            state.claim_scan[stream] = cursor
        if claimed:
            return [(stream, claimed, True)]
    state.claim_due = False
    state.next_claim_at = time.monotonic() + transport.options.claim_idle_ms / 2000
    return []


async def read_new(
    transport: RedisTransport,
    client: Redis,
    state: Subscription,
    streams: Collection[str],
    count: int,
) -> list[tuple[str, list[Entry], bool]]:
    """One blocking ``XREADGROUP`` of new entries (``>``) of ``streams`` through
    ``client``: up to ``count`` entries per stream."""
    try:
        reply = await transport.call(
            client.xreadgroup(
                state.group,
                state.consumer,
                dict.fromkeys(streams, ">"),
                count=count,
                block=transport.options.block_ms,
            )
        )
    except TransportError as exc:
        if "NOGROUP" not in str(exc):
            raise
        # A stream was deleted under us: recreate the groups and carry on.
        await transport.declare_subscription(state.group, ())
        return []
    read: list[tuple[str, list[Entry], bool]] = []
    for stream, stream_entries in reply or []:
        name = stream.decode() if isinstance(stream, bytes) else str(stream)
        read.append((name, list(stream_entries), False))
    return read
