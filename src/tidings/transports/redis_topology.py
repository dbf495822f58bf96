"""The Redis transport's shard count as a fact of the server, not of one URL.

A stream split into N shard streams records N under ``<stream>:shards``, set once by
the first publisher or consumer that uses the sharded topology. Publishers and
consumers agree on the count through that key: a URL whose ``?shards=`` disagrees
is refused with a :class:`~tidings.errors.ConfigurationError`, because a publisher
writing the wrong shard streams (or a consumer reading them) would silently break
per-key order or leave events unread.

An unsharded stream (``?shards=1``, today's layout) records nothing: it *is* the
record. Its key existing, or no key at all, means one shard; so a sharded URL is
refused while the unsharded stream exists, and an unsharded one while the count key
exists. The check runs inside the publishing script (atomic with the ``XADD``, one
``GET`` per batch) and when a subscription is declared.

Deleting a group (:func:`delete_group`) goes by the recorded count, not the URL's: it
destroys the group on every shard stream, and when that was the stream's last group
the shard streams go with the count key, so that the next publisher or consumer may
record another count (the entries were split for the old one). An unsharded stream
stays: it is the shared log a group declared later reads from the start.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError

from tidings.errors import ConfigurationError
from tidings.transports.redis_options import RedisOptions

#: The error a script returns when the recorded count differs from the URL's.
MISMATCH = "TIDINGS_SHARDS"

# A Lua function both scripts start with: KEYS[1] the count key, KEYS[2] the
# unsharded stream, ``shards`` the URL's count as a string. Returns the count the
# server knows, recording ``shards`` when nothing is known yet.
RECORDED_SHARDS = """
local function recorded_shards(shards)
    local recorded = redis.call('GET', KEYS[1])
    if recorded then return recorded end
    if shards == '1' or redis.call('EXISTS', KEYS[2]) == 1 then return '1' end
    redis.call('SET', KEYS[1], shards)
    return shards
end
"""

# KEYS[1] the count key, KEYS[2] the unsharded stream; ARGV[1] the URL's count.
_CHECK = (
    RECORDED_SHARDS
    + """
local recorded = recorded_shards(ARGV[1])
if recorded ~= ARGV[1] then return redis.error_reply('TIDINGS_SHARDS ' .. recorded) end
return recorded
"""
)
_CHECK_SHA = hashlib.sha1(_CHECK.encode()).hexdigest()

# KEYS[1] the count key, KEYS[2] the unsharded stream, KEYS[3..] the shard streams of
# the count the caller read (ARGV[2], '' for none); ARGV[1] the group. Destroys the
# group on each of these streams; then, if the stream is sharded and that was its last
# group (no shard stream has one left), deletes the shard streams and the count key.
# (A sharded stream that had no group, only entries kept for groups declared later,
# stays.) Atomic, so a group declared meanwhile is never deleted with them. Refuses
# when the count changed since the caller read it (its keys would be the wrong shard
# streams).
_DELETE = """
local recorded = redis.call('GET', KEYS[1]) or ''
if recorded ~= ARGV[2] then return redis.error_reply('TIDINGS_RECOUNT') end
local destroyed, left = 0, 0
for i = 2, #KEYS do
    if redis.call('TYPE', KEYS[i]).ok == 'stream' then
        destroyed = destroyed + redis.call('XGROUP', 'DESTROY', KEYS[i], ARGV[1])
        if i > 2 then left = left + #redis.call('XINFO', 'GROUPS', KEYS[i]) end
    end
end
if recorded ~= '' and destroyed > 0 and left == 0 then
    redis.call('DEL', KEYS[1], unpack(KEYS, 3))
end
"""
_DELETE_SHA = hashlib.sha1(_DELETE.encode()).hexdigest()
# Attempts of a deletion whose count another process recorded (or deleted) meanwhile.
_DELETE_ATTEMPTS = 3


def mismatch(options: RedisOptions, error: ResponseError) -> ConfigurationError | None:
    """The configuration error a script's shard-count refusal stands for, else None."""
    words = str(error).split()
    if len(words) != 2 or words[0] != MISMATCH:
        return None
    recorded = words[1]
    if recorded == "1":
        known = f"Redis stream {options.stream!r} exists unsharded (one stream, no ?shards=)"
        change = "move to a new ?stream="
    else:
        known = (
            f"Redis stream {options.stream!r} is split into {recorded} shards "
            f"(recorded in {options.shards_key!r})"
        )
        change = (
            "delete the subscription of every group of the stream (tidings declare APP "
            "--delete --yes; the last one deletes the shard streams and their count), or "
            "move to a new ?stream="
        )
    return ConfigurationError(
        f"{known}, but this URL says ?shards={options.shards}: give every publisher and "
        f"consumer of the stream ?shards={recorded}; to change the count, {change} (the "
        "shard of an event depends on the count, so existing entries cannot be re-split "
        "in place)"
    )


async def check_shards(client: Redis, options: RedisOptions) -> None:
    """Record the URL's shard count if the server knows none; refuse a different one."""
    keys = [options.shards_key, options.stream]
    try:
        await _run(client, _CHECK, _CHECK_SHA, keys, [str(options.shards)])
    except ResponseError as exc:
        refused = mismatch(options, exc)
        if refused is not None:
            raise refused from exc
        raise


async def delete_group(client: Redis, options: RedisOptions, group: str) -> None:
    """Destroy ``group`` on the stream, or on every shard stream of the count Redis
    records (whatever ``options.shards`` says); a sharded stream whose last group this
    was is deleted with its count key."""
    for _ in range(_DELETE_ATTEMPTS):
        found = await client.get(options.shards_key)
        recorded = found.decode() if isinstance(found, bytes) else (found or "")
        count = int(recorded) if recorded else options.shards
        keys = [options.shards_key, options.stream]
        if count > 1:
            keys += dataclasses.replace(options, shards=count).streams
        try:
            await _run(client, _DELETE, _DELETE_SHA, keys, [group, recorded])
            return
        except ResponseError as exc:
            if "TIDINGS_RECOUNT" not in str(exc):
                raise
    raise ConfigurationError(
        f"the shard count of Redis stream {options.stream!r} ({options.shards_key!r}) kept "
        f"changing while group {group!r} was being deleted: stop the publishers and "
        "consumers of the stream, then delete it again"
    )


async def _run(client: Redis, script: str, sha: str, keys: list[str], arguments: list[str]) -> Any:
    """``EVALSHA`` of ``script``, loading it first if the server does not know it."""
    try:
        return await client.evalsha(sha, len(keys), *keys, *arguments)
    except NoScriptError:
        await client.script_load(script)
        return await client.evalsha(sha, len(keys), *keys, *arguments)
