"""A consumer process that owns shards of a sharded NATS subscription, then hangs.

``python -m tests.support.nats_shard_owner URL GROUP TYPE SHARDS ACK``: reads the
granted ``SHARDS`` (comma-separated) with ``subscribe_shards``, acknowledges the first
``ACK`` deliveries only, prints ``RECEIVED <id>`` for each delivery and ``HOLDING``
once it has acknowledged ``ACK`` of them and a batch is left unacknowledged; then it
waits to be SIGKILLed, like a consumer that dies in the middle of its work.
"""

from __future__ import annotations

import asyncio
import sys

from tidings.contracts.cloudevents import decode_binary
from tidings.transports.nats import NatsTransport
from tidings.transports.sharding import ShardSet


async def main(url: str, group: str, event_type: str, granted: str, ack: int) -> None:
    transport = NatsTransport(url)
    await transport.connect()
    shards = ShardSet(transport.shard_count(group))
    shards.grant(int(shard) for shard in granted.split(","))
    acked = 0
    async for batch in transport.subscribe_shards(group, {event_type}, 5, shards):
        unacked = 0
        for delivery in batch:
            event = decode_binary(delivery.headers, delivery.body, prefix="ce-")
            print("RECEIVED", event.id, flush=True)
            if acked < ack:
                await delivery.ack()
                acked += 1
            else:
                unacked += 1
        if acked >= ack and unacked:
            print("HOLDING", flush=True)
            await asyncio.Event().wait()  # until SIGKILL


if __name__ == "__main__":
    url, group, event_type, granted, ack = sys.argv[1:6]
    asyncio.run(main(url, group, event_type, granted, int(ack)))
