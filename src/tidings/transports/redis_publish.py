"""The Redis transport's publishing script: a whole batch in one ``EVALSHA``.

One reply per batch is what makes publishing fast: with a pipeline of ``XADD`` the
client parses a reply per event, which costs more than everything else the relay
does per event (see the transport's module docs, "Confirmation").
"""

from __future__ import annotations

import hashlib
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

# KEYS[1] the stream; ARGV: source, maxlen ('' for none), then per event its type,
# partition key, id and body. Trimming once at the end keeps the same approximate cap
# as trimming on every XADD, for one command instead of one per event.
ADD_BATCH = """
local stream, source, maxlen = KEYS[1], ARGV[1], ARGV[2]
local added = 0
for i = 3, #ARGV, 4 do
    redis.call('XADD', stream, '*', 'type', ARGV[i], 'source', source,
               'key', ARGV[i + 1], 'id', ARGV[i + 2], 'body', ARGV[i + 3])
    added = added + 1
end
if maxlen ~= '' then
    redis.call('XTRIM', stream, 'MAXLEN', '~', maxlen)
end
return added
"""
ADD_BATCH_SHA = hashlib.sha1(ADD_BATCH.encode()).hexdigest()


async def add_batch(client: Redis, stream: str, arguments: list[str | bytes]) -> Any:
    """Run the batch script on ``stream``; its reply is the number of entries added."""
    try:
        return await client.evalsha(ADD_BATCH_SHA, 1, stream, *arguments)
    except NoScriptError:
        # A restarted or flushed server forgot the script: load it, run it again.
        await client.script_load(ADD_BATCH)
        return await client.evalsha(ADD_BATCH_SHA, 1, stream, *arguments)
