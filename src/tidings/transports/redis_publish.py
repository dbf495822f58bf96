"""The Redis transport's publishing script: a whole batch in one ``EVALSHA``.

One reply per batch is what makes publishing fast: with a pipeline of ``XADD`` the
client parses a reply per event, which costs more than everything else the relay
does per event (see the transport's module docs, "Confirmation"). The script also
checks the stream's recorded shard count (:mod:`tidings.transports.redis_topology`),
atomically with the writes, so a publisher with a wrong ``?shards=`` writes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from tidings.contracts.cloud_event import CloudEvent
from tidings.contracts.cloudevents import encode_structured
from tidings.contracts.envelope import partition_slot
from tidings.transports.redis_options import RedisOptions
from tidings.transports.redis_topology import RECORDED_SHARDS

# KEYS[1] the shard-count key, KEYS[2] the unsharded stream, KEYS[3..] the shard
# streams (sharded only); ARGV: source, maxlen ('' for none), the shard count, then
# per event its type, partition key, id, body and shard (0-based). An unsharded batch
# goes to KEYS[2], shard i of a sharded one to KEYS[3 + i]. Trimming once per touched
# stream at the end keeps the same approximate cap as trimming on every XADD, for one
# command instead of one per event.
ADD_BATCH = (
    RECORDED_SHARDS
    + """
local source, maxlen, shards = ARGV[1], ARGV[2], ARGV[3]
local recorded = recorded_shards(shards)
if recorded ~= shards then return redis.error_reply('TIDINGS_SHARDS ' .. recorded) end
local first = 2
if shards ~= '1' then first = 3 end
local added, touched = 0, {}
for i = 4, #ARGV, 5 do
    local stream = KEYS[first + tonumber(ARGV[i + 4])]
    redis.call('XADD', stream, '*', 'type', ARGV[i], 'source', source,
               'key', ARGV[i + 1], 'id', ARGV[i + 2], 'body', ARGV[i + 3])
    touched[stream] = true
    added = added + 1
end
if maxlen ~= '' then
    for stream in pairs(touched) do
        redis.call('XTRIM', stream, 'MAXLEN', '~', maxlen)
    end
end
return added
"""
)
ADD_BATCH_SHA = hashlib.sha1(ADD_BATCH.encode()).hexdigest()


def batch_call(
    options: RedisOptions, source: str, events: Sequence[CloudEvent]
) -> tuple[list[str], list[str | bytes]]:
    """The keys and arguments of the script publishing ``events`` of ``source``."""
    shards = options.shards
    keys = [options.shards_key, options.stream]
    if shards > 1:
        keys += options.streams
    maxlen = options.maxlen
    arguments: list[str | bytes] = [source, "" if maxlen is None else str(maxlen), str(shards)]
    for event in events:
        key = event.subject or ""
        shard = partition_slot(key) % shards
        arguments += (event.type, key, event.id, encode_structured(event), str(shard))
    return keys, arguments


async def add_batch(client: Redis, keys: list[str], arguments: list[str | bytes]) -> Any:
    """Run the batch script; its reply is the number of entries added."""
    try:
        return await client.evalsha(ADD_BATCH_SHA, len(keys), *keys, *arguments)
    except NoScriptError:
        # A restarted or flushed server forgot the script: load it, run it again.
        await client.script_load(ADD_BATCH)
        return await client.evalsha(ADD_BATCH_SHA, len(keys), *keys, *arguments)
