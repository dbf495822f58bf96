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
"""

from __future__ import annotations

import hashlib

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


def mismatch(options: RedisOptions, error: ResponseError) -> ConfigurationError | None:
    """The configuration error a script's shard-count refusal stands for, else None."""
    words = str(error).split()
    if len(words) != 2 or words[0] != MISMATCH:
        return None
    recorded = words[1]
    if recorded == "1":
        known = f"Redis stream {options.stream!r} exists unsharded (one stream, no ?shards=)"
    else:
        known = (
            f"Redis stream {options.stream!r} is split into {recorded} shards "
            f"(recorded in {options.shards_key!r})"
        )
    return ConfigurationError(
        f"{known}, but this URL says ?shards={options.shards}: give every publisher and "
        f"consumer of the stream ?shards={recorded}; to change the count, move to a new "
        "?stream= (the shard of an event depends on the count, so existing entries "
        "cannot be re-split in place)"
    )


async def check_shards(client: Redis, options: RedisOptions) -> None:
    """Record the URL's shard count if the server knows none; refuse a different one."""
    keys = (options.shards_key, options.stream)
    try:
        try:
            await client.evalsha(_CHECK_SHA, 2, *keys, str(options.shards))
        except NoScriptError:
            await client.script_load(_CHECK)
            await client.evalsha(_CHECK_SHA, 2, *keys, str(options.shards))
    except ResponseError as exc:
        refused = mismatch(options, exc)
        if refused is not None:
            raise refused from exc
        raise
