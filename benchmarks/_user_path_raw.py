"""The hand-written pipeline of ``user_path.py``: a relay process and a consumer process.

What a team would write without tidings, with the same fast paths tidings uses:

- ``relay``: asyncpg + aio-pika. In one transaction it takes up to 500 outbox rows
  (``FOR UPDATE SKIP LOCKED``, in position order), publishes them with pipelined
  publisher confirms, deletes them, commits. Idle, it waits for the outbox trigger's
  ``NOTIFY`` (or 50 ms).
- ``consume``: aio-pika + asyncpg, prefetch 256. It takes what has arrived (up to 200),
  decodes the CloudEvents headers and validates the payload with the same pydantic
  model, inserts the inbox rows (``ON CONFLICT DO NOTHING RETURNING``) and the effect
  rows (``unnest``) in one transaction, then acknowledges with one multiple ack.

    python _user_path_raw.py relay PRODUCER_DB AMQP_URL EXCHANGE
    python _user_path_raw.py consume CONSUMER_DB AMQP_URL QUEUE GROUP
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from datetime import UTC, datetime
from typing import Any

import aio_pika
import asyncpg

from _consume_common import BATCH, PREFETCH, _decode, asyncpg_dsn
from end_to_end import _raw_message as _message  # the same hand-written AMQP message
from tidings.persistence.tables import OUTBOX_CHANNEL
from tidings.transports.rabbitmq import _parse_url

WINDOW = 500
_TAKE = (
    "SELECT position, event_id, event_type, event_version, occurred_at, partition_key, "
    "correlation_id, payload FROM tidings_outbox ORDER BY position LIMIT $1 "
    "FOR UPDATE SKIP LOCKED"
)


async def relay(database_url: str, amqp_url: str, exchange_name: str) -> None:
    database = await asyncpg.connect(asyncpg_dsn(database_url))
    listener = await asyncpg.connect(asyncpg_dsn(database_url))
    woken = asyncio.Event()
    await listener.add_listener(OUTBOX_CHANNEL, lambda *_: woken.set())
    client_url, _ = _parse_url(amqp_url)
    connection = await aio_pika.connect(client_url)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(exchange_name, ensure=False)
    print("ready", flush=True)
    while True:
        woken.clear()
        async with database.transaction():
            rows = await database.fetch(_TAKE, WINDOW)
            if rows:
                await asyncio.gather(
                    *(exchange.publish(_message(r), routing_key=r["event_type"]) for r in rows)
                )
                await database.execute(
                    "DELETE FROM tidings_outbox WHERE position = ANY($1::bigint[])",
                    [r["position"] for r in rows],
                )
        if len(rows) < WINDOW:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), 0.05)


async def consume(database_url: str, amqp_url: str, queue_name: str, group: str) -> None:
    database = await asyncpg.connect(asyncpg_dsn(database_url))
    client_url, _ = _parse_url(amqp_url)
    connection = await aio_pika.connect(client_url)
    channel = await connection.channel(publisher_confirms=False)
    await channel.set_qos(prefetch_count=PREFETCH)
    queue = await channel.get_queue(queue_name, ensure=False)
    arrivals: asyncio.Queue[Any] = asyncio.Queue()

    async def on_message(message: Any) -> None:
        arrivals.put_nowait(message)

    await queue.consume(on_message)
    print("ready", flush=True)
    while True:
        batch = [await arrivals.get()]
        while len(batch) < BATCH and not arrivals.empty():
            batch.append(arrivals.get_nowait())
        events = [_decode(message) for message in batch]
        async with database.transaction():
            fresh = {
                row[0]
                for row in await database.fetch(
                    "INSERT INTO tidings_inbox (consumer, event_id, processed_at) "
                    "SELECT $1, unnest($2::text[]), $3 ON CONFLICT DO NOTHING RETURNING event_id",
                    group,
                    [str(e.event_id) for e in events],
                    datetime.now(UTC),
                )
            }
            kept = [e for e in events if str(e.event_id) in fresh]
            # Stamped where tidings' handler stamps its effect: after the inbox claim.
            now = time.monotonic()
            if kept:
                await database.execute(
                    "INSERT INTO bench_user_effects (event_id, thing_id, seq, at) "
                    "SELECT *, $4::float8 FROM unnest($1::text[], $2::text[], $3::bigint[])",
                    [str(e.event_id) for e in kept],
                    [e.thing_id for e in kept],
                    [e.seq for e in kept],
                    now,
                )
        await batch[-1].ack(multiple=True)


if __name__ == "__main__":
    role, *arguments = sys.argv[1:]
    asyncio.run(relay(*arguments) if role == "relay" else consume(*arguments))
