"""The whole path: PostgreSQL outbox -> relay -> RabbitMQ -> consumer with inbox in PostgreSQL.

Throughput. A backlog of events waits in the producing context's outbox (rows shaped
as tidings writes them). tidings' :class:`~tidings.outbox.Relay` and
:class:`~tidings.consumer.Consumer` run together in this process until the consumer
has acknowledged the last event; each event becomes one inbox row and one effect row
in the consuming context's database. The baseline is a hand-written asyncpg +
aio-pika pipeline doing the same work in the same run: a loop that reads 500 outbox
rows, publishes them with pipelined confirms and deletes them, running beside
``_consume_common.RawConsumer`` (batched inbox and effect inserts, one multiple ack
per batch). ``ratio`` = tidings' events/s / the baseline's; rounds alternate sides.
``ratio_signed`` = tidings' events/s with signed events (the relay signs with HMAC-SHA256,
the consumer requires and verifies the signature) / tidings' events/s unsigned in the
same round, the median over rounds.

Latency. A producer process commits one event per transaction at a steady 250/s;
relay (woken by LISTEN/NOTIFY) and consumer run here. Latency per event = moment the
consumer acknowledged it (after its transaction committed) - moment its producer's
commit returned, both ``time.monotonic()``. The first second is warm-up.

The process freezes its garbage collector's generations once everything is set up, as
``tidings run`` (relay and consumer in one process) does.

Traced. A fourth side in the same rounds: the OpenTelemetry SDK configured (a
``BatchSpanProcessor`` exporting to nowhere) and backlog rows carrying a
``traceparent`` each, so the relay makes its send spans with links and the consumer a
process span per event under it. ``ratio_traced`` = traced events/s / untraced
events/s in the same round (run next to each other), the median over rounds.

    python benchmarks/end_to_end.py            # 50,000 events, 2 rounds; 15 s paced
    python benchmarks/end_to_end.py --quick    # 5,000 events, 2 rounds; 5 s paced
    python benchmarks/end_to_end.py --smoke    # 500 events, 1 round; 2 s paced: it runs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import statistics
import time
from collections.abc import Iterator, Sequence
from typing import Any

import aio_pika
import asyncpg
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from _consume_common import (
    EVENT_TYPE,
    PREFETCH,
    AckCounter,
    RawConsumer,
    asyncpg_dsn,
    consuming_context,
    declare_queue,
    effect_rows,
    empty_consumer_tables,
    purge_queues,
    remove_queues,
)
from _harness import emit, postgres_database, reachable, report_round, reset_tables
from _relay_common import SOURCE, clear_outbox, fill_backlog, make_context, sync_engine
from relay_latency import RATE, paced_commits, percentiles
from tidings import BoundedContext
from tidings.consumer import Consumer
from tidings.contracts.signing import KeyRing, SignatureCheck
from tidings.observability import tracing as tidings_tracing
from tidings.outbox import Relay
from tidings.transports import open_transport
from tidings.transports.base import Delivery
from tidings.transports.rabbitmq import HEADER_PREFIX

AMQP = "amqp://guest:guest@127.0.0.1:5672/"
BROKER_URL = f"{AMQP}?exchange=tidings.bench-e2e&prefetch={PREFETCH}"
GROUP = "bench-e2e"
QUEUE = f"tidings.{GROUP}"
RAW_QUEUE = "bench.e2e-raw"
RAW_GROUP = "bench-e2e-raw"
WINDOW = 500
TARGET_RATIO = 1.0
TARGET_P99_MS = 10.0
TARGET_RATIO_TRACED = 0.85
TARGET_RATIO_SIGNED = 0.9
# A benchmark key, never a real one: key rings come from the environment in production.
BENCH_KEYS = KeyRing.parse("bench:YmVuY2htYXJrLWtleS0wMTIzNDU2Nzg5YWJjZGVm")


# -- tidings ------------------------------------------------------------------------------
async def tidings_pipeline(
    producer: BoundedContext,
    consumer_context: BoundedContext,
    count: int,
    on_acked: Any = None,
    *,
    signed: bool = False,
) -> tuple[AckCounter, Any]:
    """Start relay and consumer; return the ack counter and a coroutine that stops both."""
    counter = AckCounter(open_transport(BROKER_URL), count)
    counter.on_acked = on_acked
    keys = BENCH_KEYS if signed else KeyRing()
    check = SignatureCheck(keys, "required" if signed else "off")
    consumer = Consumer(consumer_context, counter, group=GROUP, signatures=check)
    relay = Relay(producer, open_transport(BROKER_URL), signing=keys)
    tasks = [asyncio.ensure_future(consumer.run()), asyncio.ensure_future(relay.run())]

    async def stop() -> None:
        await consumer.stop()
        await relay.stop()
        await asyncio.gather(*tasks)

    return counter, stop


async def tidings_seconds(
    producer: BoundedContext, consumer: BoundedContext, count: int, *, signed: bool = False
) -> float:
    start = time.perf_counter()
    counter, stop = await tidings_pipeline(producer, consumer, count, signed=signed)
    await counter.done.wait()
    seconds = time.perf_counter() - start
    await stop()
    return seconds


# -- the hand-written baseline ------------------------------------------------------------
_READ = (
    "SELECT position, event_id, event_type, event_version, partition_key, payload, "
    "occurred_at, correlation_id FROM tidings_outbox ORDER BY position LIMIT $1"
)


def _raw_message(row: Any) -> aio_pika.Message:
    headers = {
        HEADER_PREFIX + "specversion": "1.0",
        HEADER_PREFIX + "id": row["event_id"],
        HEADER_PREFIX + "source": SOURCE,
        HEADER_PREFIX + "type": row["event_type"],
        HEADER_PREFIX + "dataversion": str(row["event_version"]),
        HEADER_PREFIX + "time": row["occurred_at"].isoformat(),
        HEADER_PREFIX + "subject": row["partition_key"],
        HEADER_PREFIX + "correlationid": row["correlation_id"],
    }
    return aio_pika.Message(
        row["payload"].encode(),
        headers=headers,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=row["event_id"],
        type=row["event_type"],
        app_id=SOURCE,
    )


async def raw_relay(url: str, count: int) -> None:
    """Read, publish with pipelined confirms, delete; until ``count`` were sent."""
    database = await asyncpg.connect(asyncpg_dsn(url))
    connection = await aio_pika.connect(AMQP)
    try:
        channel = await connection.channel(publisher_confirms=True)
        sent = 0
        while sent < count:
            rows = await database.fetch(_READ, WINDOW)
            if not rows:
                await asyncio.sleep(0.005)
                continue
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(_raw_message(row), routing_key=RAW_QUEUE)
                    for row in rows
                )
            )
            await database.execute(
                "DELETE FROM tidings_outbox WHERE position = ANY($1::bigint[])",
                [row["position"] for row in rows],
            )
            sent += len(rows)
    finally:
        await connection.close()
        await database.close()


async def raw_seconds(out_url: str, in_url: str, count: int) -> float:
    consumer = RawConsumer(in_url, BROKER_URL, RAW_QUEUE, RAW_GROUP)
    start = time.perf_counter()
    await asyncio.gather(raw_relay(out_url, count), consumer.run(count))
    seconds = time.perf_counter() - start
    if consumer.handled != count:
        raise RuntimeError(f"the raw pipeline handled {consumer.handled} of {count} events")
    return seconds


# -- throughput rounds --------------------------------------------------------------------
async def prepare_broker() -> None:
    """The consuming group's queue as the transport declares it, the raw one alike; empty."""
    transport = open_transport(BROKER_URL)
    await transport.connect()
    await transport.declare_subscription(GROUP, {EVENT_TYPE})
    await transport.close()
    connection = await aio_pika.connect(AMQP)
    await declare_queue(await connection.channel(), RAW_QUEUE)
    await connection.close()
    await purge_queues(BROKER_URL, [QUEUE, RAW_QUEUE])


async def throughput(
    out_url: str, in_url: str, producer: BoundedContext, consumer: BoundedContext, **sizes: int
) -> tuple[dict[str, float], dict[str, float]]:
    events, rounds = sizes["events"], sizes["rounds"]
    out_engine = sync_engine(out_url)
    best = {"raw": 0.0, "tidings": 0.0, "signed": 0.0, "traced": 0.0}
    # Traced and signed rates over the unsigned, untraced one of the same round, run
    # next to it (the machine drifts between rounds more than within one).
    paired: dict[str, list[float]] = {"traced": [], "signed": []}
    tracing = _Tracing()
    for round_number in range(-1, rounds):  # round -1: warm-up, 1,000 events, not counted
        size = min(1000, events) if round_number < 0 else events
        rates: dict[str, float] = {}
        order = ("raw", "signed", "tidings", "traced")
        if round_number % 2:
            order = order[::-1]
        for side in order:
            clear_outbox(out_engine)
            fill_backlog(
                out_engine, size, start=max(round_number, 0) * events, traced=side == "traced"
            )
            empty_consumer_tables(in_url)
            if side == "raw":
                seconds = await raw_seconds(out_url, in_url, size)
            else:
                with tracing.on(side == "traced"):
                    seconds = await tidings_seconds(
                        producer, consumer, size, signed=side == "signed"
                    )
            if effect_rows(in_url) != size:
                raise RuntimeError(f"{side}: expected {size} effect rows")
            rates[side] = size / seconds
        if round_number < 0:
            continue
        report_round(f"round {round_number + 1}", rates, best)
        for side, ratios in paired.items():
            ratios.append(rates[side] / rates["tidings"])
    clear_outbox(out_engine)
    out_engine.dispose()
    tracing.shutdown()
    return best, {side: statistics.median(ratios) for side, ratios in paired.items()}


# -- traced throughput ----------------------------------------------------------------------
class _Nowhere(SpanExporter):
    """Drops spans: what is measured is making them, not shipping them. Counts them."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


class _Tracing:
    """The OpenTelemetry SDK switched on for the traced side's rounds only.

    An application sets its tracer provider once; this benchmark puts the SDK provider
    into the API's global and takes it out again around each traced round (a shortcut
    for benchmarking only), so that traced and untraced rounds alternate in one process
    and their ratio is not skewed by the machine's drift between phases.
    """

    def __init__(self) -> None:
        self.provider = TracerProvider()
        self.exporter = _Nowhere()
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter))

    @contextlib.contextmanager
    def on(self, enabled: bool) -> Iterator[None]:
        if not enabled:
            yield
            return
        trace._TRACER_PROVIDER = self.provider  # see the class docstring
        try:
            yield
        finally:
            trace._TRACER_PROVIDER = None
            tidings_tracing._tracer = None  # tidings reads it again

    def shutdown(self) -> None:
        self.provider.shutdown()  # exports what is left
        if not self.exporter.spans:
            raise RuntimeError("traced rounds made no spans: the SDK was not in use")


# -- latency ------------------------------------------------------------------------------
async def latency(
    out_url: str, producer: BoundedContext, consumer: BoundedContext, seconds: float
) -> dict[str, float]:
    count = int(seconds * RATE)
    handled: dict[str, float] = {}

    def on_acked(deliveries: Sequence[Delivery], at: float) -> None:
        for delivery in deliveries:
            handled[str(delivery.headers[HEADER_PREFIX + "id"])] = at

    counter, stop = await tidings_pipeline(producer, consumer, count, on_acked)
    await asyncio.sleep(1.0)  # connected, listening and consuming before the first commit
    committed = await paced_commits(out_url, count)
    try:
        await asyncio.wait_for(counter.done.wait(), 30)
    finally:
        await stop()
    figures = percentiles(committed, handled)
    figures["paced_events"] = figures.pop("events")
    return figures


async def measure(out_url: str, in_url: str, *, events: int, rounds: int, seconds: float) -> Any:
    await prepare_broker()
    producer = make_context(out_url, broker_url=BROKER_URL)
    consumer = consuming_context(in_url, BROKER_URL, GROUP)
    # As `tidings run` does once the application is loaded (tidings.cli.common): what
    # lives as long as the process is left out of later collections, for both sides.
    gc.collect()
    gc.freeze()
    try:
        best, paired = await throughput(
            out_url, in_url, producer, consumer, events=events, rounds=rounds
        )
        empty_consumer_tables(in_url)
        paced = await latency(out_url, producer, consumer, seconds)
        empty_consumer_tables(in_url)
    finally:
        await producer.adispose()
        await consumer.adispose()
        await remove_queues(BROKER_URL, GROUP, RAW_QUEUE)
    return best, paired, paced


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 events; 5 s paced")
    parser.add_argument("--smoke", action="store_true", help="500 events, 1 round; 2 s paced")
    parser.add_argument("--events", type=int, help="backlog per round (default 50,000)")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seconds", type=float, help="paced latency run (default 15)")
    arguments = parser.parse_args()
    events = arguments.events or (500 if arguments.smoke else 5_000 if arguments.quick else 50_000)
    seconds = arguments.seconds or (2.0 if arguments.smoke else 5.0 if arguments.quick else 15.0)
    arguments.rounds = arguments.rounds or (1 if arguments.smoke else 2)
    out_url, in_url = postgres_database(), postgres_database("tidings_bench_in")
    if out_url is None or in_url is None or not reachable(5672):
        print("PostgreSQL or RabbitMQ unreachable on 127.0.0.1: nothing to measure")
        emit({})
        return
    reset_tables(out_url)
    reset_tables(in_url, "bench_effects")
    print(f"{events:,} events x {arguments.rounds} rounds; {seconds:.0f} s at {RATE}/s")
    best, paired, paced = asyncio.run(
        measure(out_url, in_url, events=events, rounds=arguments.rounds, seconds=seconds)
    )
    ratio = best["tidings"] / best["raw"]
    traced = best["traced"]
    ratio_traced, ratio_signed = paired["traced"], paired["signed"]
    print(
        f"events/s {best['tidings']:,.0f} (raw {best['raw']:,.0f}): ratio {ratio:.3f} "
        f"(target >= {TARGET_RATIO}); p50 {paced['p50_ms']} ms, p99 {paced['p99_ms']} ms "
        f"(target <= {TARGET_P99_MS}); traced {traced:,.0f} events/s: ratio_traced "
        f"{ratio_traced:.3f} (target >= {TARGET_RATIO_TRACED}); signed "
        f"{best['signed']:,.0f}/s: ratio_signed {ratio_signed:.3f} (target >= "
        f"{TARGET_RATIO_SIGNED})"
    )
    emit(
        {
            "events_per_s": round(best["tidings"]),
            "raw_per_s": round(best["raw"]),
            "ratio": round(ratio, 3),
            "traced_per_s": round(traced),
            "ratio_traced": round(ratio_traced, 3),
            "signed_per_s": round(best["signed"]),
            "ratio_signed": round(ratio_signed, 3),
            "events": events,
            "rounds": arguments.rounds,
            **paced,
        }
    )


if __name__ == "__main__":
    main()
