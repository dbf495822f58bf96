"""Receiving from each broker: a transport's batches and acks against its raw client.

For each broker, ``ratio_<broker>`` is the events/s of the transport's
``subscribe_batches`` + ``ack_many`` (what tidings' consumer runs on) divided by the
events/s of the broker's client reading and acknowledging the same messages, in the
same run, rounds interleaved, best round of each side. Neither side decodes or handles
the events: this is the transport's share of consuming, which ``consume.py`` measures
whole on RabbitMQ.

Each side hands every message's body and headers on, as a consumer needs them, and
acknowledges them. Both sides read the same published messages, each through a
subscription of its own (declared by the transport before publishing, so each gets
every event):

* Redis: ``XREADGROUP COUNT 100`` then one ``XACK`` of the ids read.
* NATS: ``fetch`` of 256 from the group's durable pull consumer, each message acked.
* Pub/Sub (Google's emulator): google-cloud-pubsub's streaming pull with the transport's
  flow control (1,000 messages) and its default thread-pool callbacks, each message
  acked in its callback.

Kafka is left out: against Tansu, the same aiokafka loop reading the same 30,000
records ran at 43,000/s in one run and 178,000/s in the next, depending on when the
broker's fetch responses arrived, so a ratio would measure Tansu, not the transport.
RabbitMQ is measured whole, consumer and inbox included, by ``consume.py``.

The clock of each side starts at its first delivery, so subscribing is left out, and
stops at its last.

    python benchmarks/receive.py                       # every reachable broker
    python benchmarks/receive.py --brokers redis --quick
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from _harness import emit, reachable_brokers, remove_broker_state, report_round
from tidings.contracts.cloudevents import CloudEvent
from tidings.transports import open_transport
from tidings.transports.base import Transport

EVENT_TYPE = "bench.thing.updated"
MAX_BATCH = 200
BROKERS: dict[str, tuple[str, int]] = {
    "redis": ("redis://127.0.0.1:6379/0?stream=tidings:bench-receive", 6379),
    "nats": (
        "nats://127.0.0.1:4222?stream=TIDINGS_BENCH_RECEIVE&subject_prefix=tidings_bench_receive",
        4222,
    ),
    "pubsub": ("pubsub://tidings-bench?emulator=127.0.0.1:8085&topic=tidings.bench-receive", 8085),
}

RawReader = Callable[[str, int], Awaitable[float]]


def make_events(count: int) -> list[CloudEvent]:
    """Events shaped like the relay benchmark's: 1,000 keys, a short JSON payload."""
    return [
        CloudEvent(
            id=str(uuid.uuid4()),
            source="bench",
            type=EVENT_TYPE,
            subject=f"thing-{i % 1000}",
            time="2026-01-01T00:00:00Z",
            correlationid=str(uuid.uuid4()),
            data_json=json.dumps(
                {"thing_id": f"thing-{i % 1000}", "seq": i, "name": "Desk lamp"}
            ).encode(),
        )
        for i in range(count)
    ]


class Clock:
    """Counts events from the first delivery on; rate excludes that first batch."""

    def __init__(self) -> None:
        self.first_at: float | None = None
        self.after_first = 0

    def arrived(self, count: int) -> None:
        if self.first_at is None:
            self.first_at = time.perf_counter()
        else:
            self.after_first += count

    def rate(self) -> float:
        assert self.first_at is not None
        return self.after_first / (time.perf_counter() - self.first_at)


# -- tidings -------------------------------------------------------------------------------
async def tidings_rate(transport: Transport, group: str, count: int) -> float:
    clock, received = Clock(), 0
    batches = transport.subscribe_batches(group, {EVENT_TYPE}, MAX_BATCH)
    async with contextlib.aclosing(batches):
        async for batch in batches:
            await transport.ack_many(batch)
            clock.arrived(len(batch))
            received += len(batch)
            if received >= count:
                break
    return clock.rate()


# -- raw clients ---------------------------------------------------------------------------
_handed_on: list[tuple[Any, Any]] = []


def hand_on(messages: Iterable[tuple[Any, Any]]) -> int:
    """Give each message's body and headers to the application (kept until the next
    batch, as a consumer keeps its batch); returns how many there were."""
    _handed_on[:] = messages
    return len(_handed_on)


async def raw_redis(url: str) -> tuple[RawReader, Callable[[], Awaitable[None]]]:
    from redis.asyncio import Redis

    from tidings.transports.redis import RedisOptions

    options, client_url = RedisOptions.split_url(url)
    client = Redis.from_url(client_url)

    async def read(group: str, count: int) -> float:
        clock, received = Clock(), 0
        while received < count:
            reply = await client.xreadgroup(
                group, "raw", {options.stream: ">"}, count=100, block=1000
            )
            for _stream, entries in reply or []:
                ids = [entry_id for entry_id, _fields in entries]
                hand_on((fields[b"body"], fields) for _id, fields in entries)
                await client.xack(options.stream, group, *ids)
                clock.arrived(len(ids))
                received += len(ids)
        return clock.rate()

    return read, client.aclose


async def raw_nats(url: str) -> tuple[RawReader, Callable[[], Awaitable[None]]]:
    import nats
    import nats.errors

    from tidings.transports.nats_options import durable_name, parse_url

    servers, options = parse_url(url)
    client = await nats.connect(servers)
    js = client.jetstream()

    async def read(group: str, count: int) -> float:
        subscription = await js.pull_subscribe_bind(
            durable=durable_name(group), stream=options.stream
        )
        try:
            clock, received = Clock(), 0
            while received < count:
                with contextlib.suppress(nats.errors.TimeoutError):
                    messages = await subscription.fetch(256, timeout=1)
                    hand_on((message.data, message.headers) for message in messages)
                    for message in messages:
                        await message.ack()
                    clock.arrived(len(messages))
                    received += len(messages)
            return clock.rate()
        finally:
            await subscription.unsubscribe()

    return read, client.close


async def raw_pubsub(url: str) -> tuple[RawReader, Callable[[], Awaitable[None]]]:
    from google.cloud import pubsub_v1

    from tidings.transports.pubsub import PubSubTransport

    transport = PubSubTransport(url)
    subscriber = transport._subscriber_client()
    flow_control = pubsub_v1.types.FlowControl(
        max_messages=transport.options.prefetch,
        max_duration_per_lease_extension=transport.options.ack_deadline,
    )

    async def read(group: str, count: int) -> float:
        clock, lock, done = Clock(), threading.Lock(), threading.Event()
        received = [0]

        def callback(message: Any) -> None:
            kept = (message.data, dict(message.attributes))  # what a consumer needs
            message.ack()
            with lock:
                clock.arrived(1)
                received[0] += 1
                if received[0] >= count:
                    done.set()
            del kept

        future = subscriber.subscribe(
            transport._topology.subscription_path(group), callback, flow_control=flow_control
        )
        try:
            if not await asyncio.to_thread(done.wait, 300):
                raise RuntimeError(f"only {received[0]} of {count} messages arrived")
            return clock.rate()
        finally:
            future.cancel()
            with contextlib.suppress(Exception):
                await asyncio.to_thread(future.result, 10)

    async def close() -> None:
        subscriber.close()

    return read, close


# -- rounds --------------------------------------------------------------------------------
async def measure(name: str, url: str, *, events: int, rounds: int) -> dict[str, float]:
    opener: dict[str, Callable[[str], Awaitable[tuple[RawReader, Any]]]] = {
        "redis": raw_redis,
        "nats": raw_nats,
        "pubsub": raw_pubsub,
    }
    read_raw, close = await opener[name](url)
    best = {"raw": 0.0, "tidings": 0.0}
    groups: list[str] = []
    try:
        async with open_transport(url) as transport:
            for round_number in range(rounds):
                raw_group, tidings_group = (
                    f"bench-raw-{round_number}",
                    f"bench-tidings-{round_number}",
                )
                groups += [raw_group, tidings_group]
                for group in (raw_group, tidings_group):
                    await transport.declare_subscription(group, {EVENT_TYPE})
                published = make_events(events)
                for first in range(0, events, 500):
                    await transport.publish_batch("bench", published[first : first + 500])
                # Alternate which side reads first, so neither always finds a warmer cache.
                sides: list[tuple[str, Callable[[], Awaitable[float]]]] = [
                    ("raw", lambda g=raw_group: read_raw(g, events)),
                    ("tidings", lambda g=tidings_group: tidings_rate(transport, g, events)),
                ]
                if round_number % 2:
                    sides.reverse()
                rates = {side: await run() for side, run in sides}
                report_round(f"{name} round {round_number + 1}", rates, best)
    finally:
        await close()
        await remove_broker_state(url, groups)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brokers", default=",".join(BROKERS))
    parser.add_argument("--quick", action="store_true", help="fewer events and rounds")
    arguments = parser.parse_args()
    events = 10_000 if arguments.quick else 50_000
    rounds = 2 if arguments.quick else 3
    figures: dict[str, object] = {}
    for name, url in reachable_brokers(parser, arguments.brokers, BROKERS):
        print(f"{name}: {events:,} events x {rounds} rounds", flush=True)
        best = asyncio.run(measure(name, url, events=events, rounds=rounds))
        figures[f"ratio_{name}"] = round(best["tidings"] / best["raw"], 3)
        figures[f"{name}_raw_per_s"] = round(best["raw"])
        figures[f"{name}_tidings_per_s"] = round(best["tidings"])
        print(f"ratio_{name}: {figures[f'ratio_{name}']}", flush=True)
    emit(figures)


if __name__ == "__main__":
    main()
