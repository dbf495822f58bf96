"""Another process on the SQLite broker, for the multi-process tests.

    python -m tests.support.sqlite_broker_peer publish URL SOURCE TYPE COUNT KEYS BATCH
    python -m tests.support.sqlite_broker_peer consume URL GROUP TYPE EXPECTED OUTFILE PAUSE_MS

``publish`` connects, prints ``ready``, waits for a line on stdin, then sends COUNT
events of SOURCE over KEYS keys named ``SOURCE-key-N`` with their sequence number in
``data.seq``. ``consume`` appends one line per delivery,
``id seq subject redelivered``, to OUTFILE *before* acking it (with an unbuffered
write, so a SIGKILL loses no line), pausing PAUSE_MS per event to stand for handler
work; it counts the ids already in OUTFILE (from a consumer that died before it) and
exits once EXPECTED distinct ids are in the file.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from tidings.contracts.cloudevents import CloudEvent, decode_structured
from tidings.domain.ids import uuid7
from tidings.transports import open_transport


async def publish(
    url: str, source: str, event_type: str, count: int, keys: int, batch: int
) -> None:
    events = [
        CloudEvent(
            id=str(uuid7()),
            source=source,
            type=event_type,
            subject=f"{source}-key-{i % keys}",
            data_json=json.dumps({"seq": i}).encode(),
        )
        for i in range(count)
    ]
    async with open_transport(url) as transport:
        # handshake so that the test can start several producers at the same moment
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        for start in range(0, count, batch):
            await transport.publish_batch(source, events[start : start + batch])


async def consume(
    url: str, group: str, event_type: str, expected: int, outfile: str, pause_ms: float
) -> None:
    seen: set[str] = set()
    if os.path.exists(outfile):
        with open(outfile) as lines:
            seen.update(line.split()[0] for line in lines if line.strip())
    fd = os.open(outfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        async with open_transport(url) as transport:
            if len(seen) >= expected:
                return
            async for delivery in transport.subscribe(group, {event_type}):
                event = decode_structured(delivery.body)
                seq, flag = event.data["seq"], int(delivery.redelivered)
                os.write(fd, f"{event.id} {seq} {event.subject} {flag}\n".encode())
                seen.add(event.id)
                if pause_ms:
                    await asyncio.sleep(pause_ms / 1000)
                await delivery.ack()
                if len(seen) >= expected:
                    return
    finally:
        os.close(fd)


def main(argv: list[str]) -> None:
    match argv:
        case ["publish", url, source, event_type, count, keys, batch]:
            asyncio.run(publish(url, source, event_type, int(count), int(keys), int(batch)))
        case ["consume", url, group, event_type, expected, outfile, pause_ms]:
            asyncio.run(consume(url, group, event_type, int(expected), outfile, float(pause_ms)))
        case _:
            sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
