"""Consumer throughput: events waiting in RabbitMQ consumed into PostgreSQL.

``ratio`` is the events/s of tidings' :class:`~tidings.consumer.Consumer` divided by the
events/s of a hand-written aio-pika + asyncpg consumer (``_consume_common.RawConsumer``)
doing the same work, in the same run, rounds interleaved, best round of each side.

Before each round both sides' quorum queues are filled with the same messages (the
RabbitMQ transport's own encoding, published straight to the queues), and the inbox and
effect tables are emptied before each side, so only consumption is timed: from the
moment the side starts consuming (tidings: its transport connected) until the last
message is acknowledged. Both use prefetch 256 and micro-batches of up to 200; each
event is decoded, validated with the same pydantic model and written as one inbox row
(duplicates skipped) and one effect row, one transaction per batch, acked after commit.

    python benchmarks/consume.py            # 50,000 events, 2 rounds
    python benchmarks/consume.py --quick    # 5,000 events, 3 rounds
    python benchmarks/consume.py --consumers 2 --smoke              # consumer_scaling
    python benchmarks/consume.py --consumers 3 --handler-io-ms 20 --sharded

``--consumers N`` measures N ``tidings consume`` processes of one group against one
instead (RabbitMQ and Kafka): see benchmarks/_consume_scaling.py.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from _consume_common import (
    EVENT_TYPE,
    PREFETCH,
    AckCounter,
    RawConsumer,
    consuming_context,
    declare_queue,
    effect_rows,
    empty_consumer_tables,
    fill_queues,
    make_events,
    purge_queues,
    remove_queues,
)
from _harness import (
    SUFFIX,
    emit,
    postgres_database,
    reachable,
    reachable_brokers,
    report_round,
    reset_tables,
)
from tidings import BoundedContext
from tidings.consumer import Consumer
from tidings.transports import open_transport

AMQP = "amqp://guest:guest@127.0.0.1:5672/"
BROKER_URL = f"{AMQP}?exchange=tidings.bench-consume&prefetch={PREFETCH}"
GROUP = "bench-consume"
RAW_GROUP = "bench-consume-raw"
TIDINGS_QUEUE = f"tidings.{GROUP}"
RAW_QUEUE = "bench.consume-raw"
TARGET = 0.9


async def tidings_seconds(context: BoundedContext, count: int) -> float:
    """Run a Consumer until ``count`` acks; seconds from transport connected to last ack."""
    counter = AckCounter(open_transport(BROKER_URL), count)
    consumer = Consumer(context, counter, group=GROUP)
    running = asyncio.ensure_future(consumer.run())
    done = asyncio.ensure_future(counter.done.wait())
    await asyncio.wait({running, done}, return_when=asyncio.FIRST_COMPLETED)
    end = time.perf_counter()
    if running.done():
        running.result()  # raises what stopped the consumer early
        raise RuntimeError("the consumer returned before acknowledging every message")
    await consumer.stop()
    await running
    if consumer.stats.handled != count:
        raise RuntimeError(f"tidings handled {consumer.stats.handled} of {count} events")
    assert counter.connected_at is not None
    return end - counter.connected_at


async def raw_seconds(url: str, count: int) -> float:
    raw = RawConsumer(url, BROKER_URL, RAW_QUEUE, RAW_GROUP)
    seconds = await raw.run(count)
    if raw.handled != count:
        raise RuntimeError(f"the raw consumer handled {raw.handled} of {count} events")
    return seconds


async def prepare() -> None:
    """Declare both queues as the transport does, and empty them."""
    transport = open_transport(BROKER_URL)
    await transport.declare_subscription(GROUP, {EVENT_TYPE})
    await transport.close()
    import aio_pika

    connection = await aio_pika.connect(AMQP)
    await declare_queue(await connection.channel(), RAW_QUEUE)
    await connection.close()
    await purge_queues(BROKER_URL, [TIDINGS_QUEUE, RAW_QUEUE])


async def measure(url: str, context: BoundedContext, events: int, rounds: int) -> dict[str, float]:
    await prepare()
    # Warm-up: connections, prepared statements, broker and database caches.
    await fill_queues(BROKER_URL, [TIDINGS_QUEUE, RAW_QUEUE], make_events(1000))
    empty_consumer_tables(url)
    await raw_seconds(url, 1000)
    empty_consumer_tables(url)
    await tidings_seconds(context, 1000)
    best = {"raw": 0.0, "tidings": 0.0}
    for round_number in range(rounds):
        started = time.perf_counter()
        await fill_queues(
            BROKER_URL, [TIDINGS_QUEUE, RAW_QUEUE], make_events(events, start=round_number)
        )
        filled = time.perf_counter() - started
        rates: dict[str, float] = {}
        # Alternate which side goes first: the second finds the broker's disk busier.
        order = ("raw", "tidings") if round_number % 2 == 0 else ("tidings", "raw")
        for side in order:
            empty_consumer_tables(url)
            if side == "raw":
                rates[side] = events / await raw_seconds(url, events)
            else:
                rates[side] = events / await tidings_seconds(context, events)
            if effect_rows(url) != events:
                raise RuntimeError(f"{side}: expected {events} effect rows")
        report_round(
            f"round {round_number + 1} (filled 2 x {events:,} in {filled:.0f} s)", rates, best
        )
    await remove_queues(BROKER_URL, GROUP, RAW_QUEUE)
    await context.adispose()
    return best


def scaling_brokers(sharded: bool) -> dict[str, tuple[str, int]]:
    """The brokers of ``--consumers N``: URL and port, with an exchange or topic of the
    run's own (removed at the end; a name reused at once may meet a Kafka broker's
    leftovers of the deleted one)."""
    name = f"tidings.bench-consume-scaling{SUFFIX}.{uuid.uuid4().hex[:8]}"
    shards = "&shards=4" if sharded else ""
    return {
        "rabbitmq": (f"{AMQP}?exchange={name}&prefetch={PREFETCH}{shards}", 5672),
        "kafka": (f"kafka://127.0.0.1:9092?topic={name}&partitions=8", 9092),
    }


def main_scaling(parser: argparse.ArgumentParser, arguments: argparse.Namespace) -> None:
    """``--consumers N``: the consumer_scaling figures (see _consume_scaling)."""
    from _consume_scaling import report

    if arguments.consumers < 2:
        parser.error("--consumers N compares N >= 2 consumer processes with one")
    smoke = arguments.smoke
    events = arguments.events or (2_000 if smoke else 5_000 if arguments.quick else 20_000)
    rounds = arguments.rounds or (1 if smoke else 2)
    url = postgres_database("tidings_bench_scaling")
    if url is None:
        print("PostgreSQL unreachable on 127.0.0.1: nothing to measure")
        emit({})
        return
    brokers = reachable_brokers(parser, arguments.brokers, scaling_brokers(arguments.sharded))
    figures = report(
        brokers,
        url,
        consumers=arguments.consumers,
        events=events,
        rounds=rounds,
        io_ms=arguments.handler_io_ms,
        warm_up=not smoke,
    )
    emit({**figures, "sharded": arguments.sharded})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 events, 3 rounds")
    parser.add_argument(
        "--events", type=int, help="events per round (default 50,000; 20,000 with --consumers)"
    )
    parser.add_argument("--rounds", type=int)
    parser.add_argument(
        "--consumers", type=int, default=0, help="consumer_scaling: N consumer processes vs one"
    )
    parser.add_argument(
        "--brokers", default="rabbitmq,kafka", help="with --consumers: rabbitmq,kafka"
    )
    parser.add_argument(
        "--sharded", action="store_true", help="with --consumers: RabbitMQ with ?shards=4"
    )
    parser.add_argument(
        "--handler-io-ms",
        type=float,
        default=0.0,
        help="with --consumers: the handler awaits this many ms once per micro-batch",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="with --consumers: 2,000 events, 1 round"
    )
    arguments = parser.parse_args()
    if arguments.consumers:
        main_scaling(parser, arguments)
        return
    events = arguments.events or (5_000 if arguments.quick else 50_000)
    rounds = arguments.rounds or (3 if arguments.quick else 2)
    url = postgres_database()
    if url is None or not reachable(5672):
        print("PostgreSQL or RabbitMQ unreachable on 127.0.0.1: nothing to measure")
        emit({})
        return
    reset_tables(url, "bench_effects")
    context = consuming_context(url, BROKER_URL, GROUP)
    print(f"{events:,} events x {rounds} rounds, prefetch {PREFETCH}", flush=True)
    best = asyncio.run(measure(url, context, events, rounds))
    ratio = best["tidings"] / best["raw"]
    print(f"ratio: {ratio:.3f} (target >= {TARGET})")
    emit(
        {
            "ratio": round(ratio, 3),
            "raw_per_s": round(best["raw"]),
            "tidings_per_s": round(best["tidings"]),
            "events": events,
            "rounds": rounds,
        }
    )


if __name__ == "__main__":
    main()
