"""Relay throughput: a PostgreSQL outbox backlog relayed to each broker.

For each broker, ``ratio_<broker>`` is the relay's events/s draining a backlog
divided by the events/s of that broker's raw client publishing the same events, in
the same run, rounds interleaved, best round of each side. The raw baseline is
honest: the same CloudEvents encoded once beforehand exactly as the transport encodes
them, the same confirmation mode and the same window of 500 messages:

* RabbitMQ: aio-pika, publisher confirms, 500 publishes pipelined then awaited
  together; persistent messages routed to one bound quorum queue.
* NATS: JetStream ``publish_async`` x 500 (with ``Nats-Msg-Id``), acks awaited together.
* Redis: one pipeline of 500 ``XADD`` (no MULTI) per window.
* Kafka: aiokafka, acks=all, idempotent when the broker allows it (as the transport),
  500 sends then the delivery futures awaited together.
* Pub/Sub (Google's emulator): google-cloud-pubsub's publisher with the transport's batch
  settings and message ordering, the same ordering keys and ``ce-`` attributes, 500
  publishes then their futures awaited together (``asyncio.wrap_future``).

Each baseline is the client as an application uses it. Where a client offers a faster
path the transport takes it (aiormq under aio-pika, one script call of ``XADD`` for a
Redis batch, one record batch per Kafka partition), so a ratio above 1 is possible.

The relay's clock starts when its transport has connected (connecting is excluded on
both sides) and stops when ``drain()`` returns, so it includes every database read
and delete, the lease, CloudEvent construction and the transport's encoding.

``backlog_ratio``: the relay's rate relaying the first events of a 1,000,000-row
backlog divided by its rate on a 10,000-row backlog, each in a fresh subprocess that
reports its peak RSS. The transport there confirms instantly, so the figure measures
what a big backlog costs the relay itself (index scans over deleted rows, memory).

    python benchmarks/relay.py                          # every reachable broker
    python benchmarks/relay.py --brokers rabbitmq,nats --quick
    python benchmarks/relay.py --brokers none           # backlog_ratio only
    python benchmarks/relay.py --relays 2 --brokers kafka,redis   # relay_scaling
    python benchmarks/relay.py --smoke                  # small, one round: it works

``--relays N`` measures partitioned relays instead: see benchmarks/_relay_scaling.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import text

from _harness import (
    SUFFIX,
    emit,
    postgres_database,
    reachable_brokers,
    remove_broker_state,
    reset_tables,
)
from _relay_common import (
    SOURCE,
    NullTransport,
    ThingUpdatedIntegrationEvent,
    Timed,
    clear_outbox,
    fill_backlog,
    make_context,
    sync_engine,
)
from tidings.contracts.cloudevents import CloudEvent
from tidings.contracts.envelope import cloud_event_from_row
from tidings.outbox import Relay
from tidings.transports import open_transport
from tidings.transports.base import Transport

WINDOW = 500
GROUP = f"bench-relay{SUFFIX}"
BROKERS: dict[str, tuple[str, int]] = {
    "rabbitmq": (f"amqp://guest:guest@127.0.0.1:5672/?exchange=tidings.bench{SUFFIX}", 5672),
    # A subject prefix of its own: a stream capturing the default `tidings.>` would keep
    # every other stream (tests, applications) from using those subjects.
    "nats": (
        f"nats://127.0.0.1:4222?stream=TIDINGS_BENCH{SUFFIX.upper()}&subject_prefix=tidings_bench{SUFFIX}",
        4222,
    ),
    "redis": (f"redis://127.0.0.1:6379/0?stream=tidings:bench{SUFFIX}", 6379),
    "kafka": (f"kafka://127.0.0.1:9092?topic=tidings.bench{SUFFIX}", 9092),
    "pubsub": (f"pubsub://tidings-bench?emulator=127.0.0.1:8085&topic=tidings.bench{SUFFIX}", 8085),
}
TARGETS = {"rabbitmq": 0.9, "nats": 0.8, "redis": 0.8, "kafka": 0.8, "pubsub": 0.8}

RawPublisher = Callable[[list[CloudEvent]], Awaitable[float]]


# -- raw clients ---------------------------------------------------------------------------
async def raw_rabbitmq(url: str) -> tuple[RawPublisher, Callable[[], Awaitable[None]]]:
    import aio_pika

    from tidings.contracts.cloudevents import encode_binary
    from tidings.transports.rabbitmq import HEADER_PREFIX, _parse_url, _routing_key

    client_url, options = _parse_url(url)
    connection = await aio_pika.connect(client_url)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.declare_exchange(
        options.exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )

    async def publish(events: list[CloudEvent]) -> float:
        # Bodies and headers encoded beforehand; building the client's message object is
        # part of publishing with aio-pika, so it is timed like the relay's.
        encoded = [(*encode_binary(event, prefix=HEADER_PREFIX), event) for event in events]
        keys = [_routing_key(event.type) for event in events]
        start = time.perf_counter()
        for first in range(0, len(encoded), WINDOW):
            publishes = []
            for (headers, body, event), key in zip(
                encoded[first : first + WINDOW], keys[first : first + WINDOW], strict=True
            ):
                message = aio_pika.Message(
                    body,
                    headers={k: v for k, v in headers.items() if k != "content-type"},
                    content_type=headers["content-type"],
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=event.id,
                    type=event.type,
                    app_id=SOURCE,
                )
                publishes.append(
                    asyncio.ensure_future(exchange.publish(message, key, mandatory=False))
                )
            await asyncio.gather(*publishes)
        return time.perf_counter() - start

    return publish, connection.close


async def raw_nats(url: str) -> tuple[RawPublisher, Callable[[], Awaitable[None]]]:
    import nats

    from tidings.transports.nats_options import parse_url
    from tidings.transports.nats_publish import encode_batch

    servers, options = parse_url(url)
    client = await nats.connect(servers)
    js = client.jetstream()

    async def publish(events: list[CloudEvent]) -> float:
        messages = encode_batch(options.subject_prefix, SOURCE, events)
        start = time.perf_counter()
        for first in range(0, len(messages), WINDOW):
            acks = [
                await js.publish_async(subject, body, headers=headers, stream=options.stream)
                for subject, headers, body in messages[first : first + WINDOW]
            ]
            await asyncio.gather(*acks)
        return time.perf_counter() - start

    return publish, client.close


async def raw_redis(url: str) -> tuple[RawPublisher, Callable[[], Awaitable[None]]]:
    from redis.asyncio import Redis

    from tidings.contracts.cloudevents import encode_structured
    from tidings.transports.redis import RedisOptions

    options, client_url = RedisOptions.split_url(url)
    client = Redis.from_url(client_url)

    async def publish(events: list[CloudEvent]) -> float:
        entries = [
            {
                "type": event.type,
                "source": SOURCE,
                "key": event.subject or "",
                "id": event.id,
                "body": encode_structured(event),
            }
            for event in events
        ]
        start = time.perf_counter()
        for first in range(0, len(entries), WINDOW):
            pipe = client.pipeline(transaction=False)
            for fields in entries[first : first + WINDOW]:
                pipe.xadd(options.stream, fields, maxlen=options.maxlen, approximate=True)  # type: ignore[arg-type]
            await pipe.execute()
        return time.perf_counter() - start

    return publish, client.aclose


async def raw_kafka(
    url: str, idempotent: bool
) -> tuple[RawPublisher, Callable[[], Awaitable[None]]]:
    from aiokafka import AIOKafkaProducer

    from tidings.contracts.cloudevents import encode_binary
    from tidings.transports.kafka import HEADER_PREFIX
    from tidings.transports.kafka_options import KafkaOptions

    options = KafkaOptions.from_url(url)
    # The transport's producer settings, so that only the relay around it differs.
    producer = AIOKafkaProducer(
        bootstrap_servers=options.bootstrap_servers,
        client_id=options.client_id,
        acks="all",
        enable_idempotence=idempotent,
        request_timeout_ms=options.request_timeout_ms,
        max_batch_size=256 * 1024,
        linger_ms=0,
    )
    await producer.start()

    async def publish(events: list[CloudEvent]) -> float:
        records = []
        for event in events:
            headers, body = encode_binary(event, prefix=HEADER_PREFIX)
            key = event.subject.encode() if event.subject is not None else None
            records.append((body, key, [(name, value.encode()) for name, value in headers.items()]))
        start = time.perf_counter()
        for first in range(0, len(records), WINDOW):
            confirmations = [
                await producer.send(options.topic, body, key=key, headers=headers)
                for body, key, headers in records[first : first + WINDOW]
            ]
            await asyncio.gather(*confirmations)
        return time.perf_counter() - start

    return publish, producer.stop


async def raw_pubsub(url: str) -> tuple[RawPublisher, Callable[[], Awaitable[None]]]:
    from tidings.transports.pubsub import PubSubTransport, _encode

    transport = PubSubTransport(url)
    # The transport's own client construction: the same batch settings and ordering.
    publisher = transport._publisher_client()

    async def publish(events: list[CloudEvent]) -> float:
        messages = [_encode(event) for event in events]
        start = time.perf_counter()
        for first in range(0, len(messages), WINDOW):
            futures = [
                publisher.publish(transport.topic_path, body, ordering_key=key, **attributes)
                for key, attributes, body in messages[first : first + WINDOW]
            ]
            await asyncio.gather(*(asyncio.wrap_future(future) for future in futures))
        return time.perf_counter() - start

    async def close() -> None:
        await asyncio.to_thread(publisher.stop)

    return publish, close


# -- the relay side ------------------------------------------------------------------------
async def relay_seconds(context: Any, transport: Transport, batch_size: int = WINDOW) -> float:
    """Drain the outbox through ``transport``; seconds from connected to drained."""
    timed = Timed(transport)
    relay = Relay(context, timed, batch_size=batch_size, complete_after_commit=False)
    count = await relay.drain()
    end = time.monotonic()
    assert timed.connected_at is not None
    if count != timed.confirmed:
        raise RuntimeError(f"relay reported {count} events, transport confirmed {timed.confirmed}")
    return end - timed.connected_at


async def pending_events(context: Any, count: int) -> list[CloudEvent]:
    """The CloudEvents of the first ``count`` pending rows, as the relay builds them."""
    async with context.async_engine.connect() as connection:
        rows = (
            await connection.execute(
                text("SELECT * FROM tidings_outbox ORDER BY position LIMIT :n"), {"n": count}
            )
        ).mappings()
        return [cloud_event_from_row(row) for row in rows]


async def prepare_broker(name: str, url: str) -> tuple[Callable[[], Transport], Any]:
    """Declare what a real deployment has (a subscribed group) and clear old messages."""
    transport = open_transport(url)
    await transport.connect()
    await transport.declare_subscription(GROUP, {ThingUpdatedIntegrationEvent.event_type})
    idempotent = bool(getattr(transport, "idempotent", True))
    await transport.close()
    await purge(name, url)
    return (lambda: open_transport(url)), idempotent


async def purge(name: str, url: str) -> None:
    """Empty what the rounds stored, so that broker state is the same for every round."""
    if name == "rabbitmq":
        import aio_pika

        connection = await aio_pika.connect(url.split("?")[0])
        channel = await connection.channel()
        queue = await channel.get_queue(f"tidings.{GROUP}", ensure=False)
        await queue.purge()
        await connection.close()
    elif name == "redis":
        from redis.asyncio import Redis

        client = Redis.from_url(url.split("?")[0])
        await client.xtrim(f"tidings:bench{SUFFIX}", maxlen=0)
        await client.aclose()
    elif name == "nats":
        import nats

        nats_client = await nats.connect("nats://127.0.0.1:4222")
        with contextlib.suppress(Exception):
            await nats_client.jetstream().purge_stream(f"TIDINGS_BENCH{SUFFIX.upper()}")
        await nats_client.close()
    elif name == "pubsub":
        # A subscription forgets its backlog when deleted; declared again, it starts empty.
        transport = open_transport(url)
        async with transport:
            await transport.delete_subscription(GROUP)
            await transport.declare_subscription(GROUP, {ThingUpdatedIntegrationEvent.event_type})
    # Kafka: appending to a longer log costs the same; nothing to clear.


async def measure_broker(
    name: str, url: str, context: Any, *, events: int, rounds: int
) -> dict[str, float]:
    engine = sync_engine(context.database_url)
    new_transport, idempotent = await prepare_broker(name, url)
    opener: dict[str, Callable[[str], Awaitable[Any]]] = {
        "rabbitmq": raw_rabbitmq,
        "nats": raw_nats,
        "redis": raw_redis,
        "kafka": lambda u: raw_kafka(u, idempotent),
        "pubsub": raw_pubsub,
    }
    publish, close = await opener[name](url)
    try:
        # Warm-up: connections, broker-side structures, caches on both sides.
        clear_outbox(engine)
        fill_backlog(engine, 2 * WINDOW)
        await publish(await pending_events(context, 2 * WINDOW))
        await relay_seconds(context, new_transport())
        best = {"raw": 0.0, "relay": 0.0}
        for round_number in range(rounds):
            clear_outbox(engine)
            fill_backlog(engine, events, start=round_number * events)
            await purge(name, url)
            raw_rate = events / await publish(await pending_events(context, events))
            await purge(name, url)
            relay_rate = events / await relay_seconds(context, new_transport())
            best["raw"] = max(best["raw"], raw_rate)
            best["relay"] = max(best["relay"], relay_rate)
            print(
                f"  {name} round {round_number + 1}: raw {raw_rate:,.0f}/s, "
                f"relay {relay_rate:,.0f}/s ({relay_rate / raw_rate:.2f})",
                flush=True,
            )
        await purge(name, url)
    finally:
        await close()
        engine.dispose()
    return best


# -- backlog scaling (subprocesses) -------------------------------------------------------
def child(url: str, count: int, batch_size: int) -> None:
    """Relay ``count`` events of the existing backlog; print rate and peak RSS as JSON."""

    async def main() -> None:
        context = make_context_quiet(url)
        relay: Relay | None = None

        def confirmed(events: Sequence[CloudEvent], _at: float) -> None:
            if timed.confirmed >= count and relay is not None:
                relay._stopping.set()  # stop() is async; the same flag, set synchronously

        timed = Timed(NullTransport("null://"), confirmed)
        relay = Relay(context, timed, batch_size=batch_size, complete_after_commit=False)
        await relay.run()
        elapsed = timed.last_confirmed_at - (timed.connected_at or 0.0)
        await context.adispose()
        print(json.dumps({"events": timed.confirmed, "seconds": elapsed, "rss_mb": peak_rss_mb()}))

    asyncio.run(main())


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started.

    ``ru_maxrss`` survives ``exec`` on Linux, so a child of a benchmark that grew large
    would report its parent's peak; the kernel's high-water mark of the process's own
    address space does not.
    """
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_context_quiet(url: str) -> Any:
    from tidings import BoundedContext

    return BoundedContext(SOURCE, database_url=url, broker_url="memory://bench")


def run_child(url: str, count: int, batch_size: int) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, __file__, "--child", url, str(count), str(batch_size)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return result


def measure_backlog(*, small: int, big: int, count: int, rounds: int) -> dict[str, float]:
    small_url = postgres_database()
    big_url = postgres_database("tidings_bench_backlog")
    assert small_url is not None and big_url is not None
    reset_tables(big_url)
    make_context(big_url).dispose()
    big_engine = sync_engine(big_url)
    start = time.perf_counter()
    for first in range(0, big, 100_000):
        fill_backlog(big_engine, min(100_000, big - first), start=first)
    with big_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE tidings_outbox"))
    print(f"  filled {big:,} rows in {time.perf_counter() - start:.0f} s", flush=True)
    small_engine = sync_engine(small_url)
    best = {"small": 0.0, "big": 0.0, "small_rss": 0.0, "big_rss": 0.0}
    for round_number in range(rounds):
        clear_outbox(small_engine)
        fill_backlog(small_engine, small)
        small_result = run_child(small_url, count, WINDOW)
        big_result = run_child(big_url, count, WINDOW)
        for side, result in (("small", small_result), ("big", big_result)):
            best[side] = max(best[side], result["events"] / result["seconds"])
            best[f"{side}_rss"] = max(best[f"{side}_rss"], result["rss_mb"])
        print(
            f"  backlog round {round_number + 1}: {small:,} rows "
            f"{small_result['events'] / small_result['seconds']:,.0f}/s "
            f"({small_result['rss_mb']:.0f} MB), {big:,} rows "
            f"{big_result['events'] / big_result['seconds']:,.0f}/s "
            f"({big_result['rss_mb']:.0f} MB)",
            flush=True,
        )
    clear_outbox(small_engine)
    small_engine.dispose()
    big_engine.dispose()
    reset_tables(big_url)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brokers", default="rabbitmq,nats,redis,kafka,pubsub")
    parser.add_argument("--quick", action="store_true", help="smaller backlogs, fewer rounds")
    parser.add_argument("--no-backlog", action="store_true", help="skip backlog_ratio")
    parser.add_argument("--smoke", action="store_true", help="2,000 events, 1 round")
    parser.add_argument(
        "--relays", type=int, default=0, help="relay_scaling: N relay processes vs one"
    )
    arguments = parser.parse_args()
    events = 2_000 if arguments.smoke else 10_000 if arguments.quick else 50_000
    rounds = 1 if arguments.smoke else 2 if arguments.quick else 3
    url = postgres_database()
    if url is None:
        print("PostgreSQL is unreachable at 127.0.0.1:5432: nothing to measure")
        emit({})
        return
    if arguments.relays:
        from _relay_scaling import report

        brokers = reachable_brokers(parser, arguments.brokers, BROKERS)
        emit(report(brokers, url, relays=arguments.relays, events=events, rounds=rounds))
        return
    figures: dict[str, object] = {}
    for name, broker_url in reachable_brokers(parser, arguments.brokers, BROKERS):
        reset_tables(url)
        context = make_context(url)
        print(f"{name}: {events:,} events x {rounds} rounds", flush=True)
        try:
            best = asyncio.run(
                measure_broker(name, broker_url, context, events=events, rounds=rounds)
            )
        finally:
            asyncio.run(remove_broker_state(broker_url, [GROUP]))
        context.dispose()
        ratio = best["relay"] / best["raw"]
        figures[f"ratio_{name}"] = round(ratio, 3)
        figures[f"{name}_raw_per_s"] = round(best["raw"])
        figures[f"{name}_relay_per_s"] = round(best["relay"])
        print(f"ratio_{name}: {ratio:.3f} (target >= {TARGETS[name]})", flush=True)
    if not (arguments.no_backlog or arguments.smoke):
        small, big = 10_000, (200_000 if arguments.quick else 1_000_000)
        print(f"backlog: {small:,} vs {big:,} pending rows", flush=True)
        backlog = measure_backlog(
            small=small, big=big, count=small, rounds=2 if arguments.quick else 3
        )
        figures["backlog_ratio"] = round(backlog["big"] / backlog["small"], 3)
        figures["backlog_small_per_s"] = round(backlog["small"])
        figures["backlog_big_per_s"] = round(backlog["big"])
        figures["backlog_small_rss_mb"] = round(backlog["small_rss"], 1)
        figures["backlog_big_rss_mb"] = round(backlog["big_rss"], 1)
        figures["backlog_big_rows"] = big
        print(f"backlog_ratio: {figures['backlog_ratio']} (target >= 0.85)")
    emit(figures)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
