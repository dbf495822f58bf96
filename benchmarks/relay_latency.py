"""Commit-to-confirmed latency of the relay: PostgreSQL LISTEN/NOTIFY to RabbitMQ.

A producer process commits one event per transaction (``with ctx.transaction()`` +
``publish``) at a steady 250 events/s and notes the moment each commit returned. The
relay runs in this process, woken by NOTIFY, and publishes to RabbitMQ with publisher
confirms into a bound quorum queue; its transport is wrapped to note the moment each
batch was confirmed. Latency is confirmed minus committed, per event (both
``time.monotonic()``, one clock for every process of the machine). The first second
is warm-up and not counted.

    python benchmarks/relay_latency.py              # 15 s
    python benchmarks/relay_latency.py --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Sequence

from _harness import emit, postgres_database, reachable, remove_broker_state, reset_tables
from _relay_common import ThingUpdatedIntegrationEvent, Timed, make_context
from relay import BROKERS, GROUP, purge
from tidings.contracts.cloudevents import CloudEvent
from tidings.outbox import Relay
from tidings.transports import open_transport

RATE = 250
RABBITMQ_URL, RABBITMQ_PORT = BROKERS["rabbitmq"]


def produce(url: str, count: int, rate: float) -> None:
    """Commit ``count`` events at ``rate``/s; print {event_id: commit time} as JSON."""
    from tidings import BoundedContext

    context = BoundedContext("bench", database_url=url)
    publish = context.integration_events.publish
    committed: dict[str, float] = {}
    start = time.monotonic() + 0.2
    for seq in range(count):
        pause = start + seq / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        event = ThingUpdatedIntegrationEvent(
            thing_id=f"thing-{seq % 1000}", seq=seq, name="Desk lamp with a long enough name"
        )
        with context.transaction():
            publish(event)
        committed[str(event.event_id)] = time.monotonic()
    context.dispose()
    print(json.dumps(committed))


async def paced_commits(url: str, count: int) -> dict[str, float]:
    """Run :func:`produce` in a subprocess; the moment each event's commit returned."""
    producer = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--produce",
        url,
        str(count),
        str(RATE),
        stdout=asyncio.subprocess.PIPE,
    )
    output, _ = await producer.communicate()
    committed: dict[str, float] = json.loads(output)
    return committed


def percentiles(committed: dict[str, float], arrived: dict[str, float]) -> dict[str, float]:
    """p50, p99 and max of arrived - committed in ms, the first second left out."""
    first_counted = min(committed.values()) + 1.0
    latencies = sorted(
        (arrived[event_id] - at) * 1000 for event_id, at in committed.items() if at >= first_counted
    )
    return {
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2),
        "max_ms": round(latencies[-1], 2),
        "events": len(latencies),
    }


async def measure(url: str, seconds: float) -> dict[str, float]:
    count = int(seconds * RATE)
    context = make_context(url, broker_url=RABBITMQ_URL)
    transport = open_transport(RABBITMQ_URL)
    await transport.connect()
    await transport.declare_subscription(GROUP, {ThingUpdatedIntegrationEvent.event_type})
    await transport.close()
    await purge("rabbitmq", RABBITMQ_URL)
    confirmed: dict[str, float] = {}
    batches: list[int] = []

    def on_confirmed(events: Sequence[CloudEvent], at: float) -> None:
        batches.append(len(events))
        for event in events:
            confirmed[event.id] = at

    relay = Relay(context, Timed(open_transport(RABBITMQ_URL), on_confirmed))
    running = asyncio.ensure_future(relay.run())
    await asyncio.sleep(1.0)  # connected and listening before the first commit
    committed = await paced_commits(url, count)
    deadline = time.monotonic() + 30
    while len(confirmed) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await relay.stop()
    await running
    await context.adispose()
    await remove_broker_state(RABBITMQ_URL, [GROUP])
    if len(confirmed) < count:
        raise RuntimeError(f"only {len(confirmed)} of {count} events were confirmed")
    return {
        **percentiles(committed, confirmed),
        "mean_batch": round(sum(batches) / len(batches), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    arguments = parser.parse_args()
    url = postgres_database()
    if url is None or not reachable(RABBITMQ_PORT):
        print("PostgreSQL or RabbitMQ unreachable on 127.0.0.1: nothing to measure")
        emit({})
        return
    reset_tables(url)
    figures = asyncio.run(measure(url, arguments.seconds))
    print(
        f"{figures['events']} events at {RATE}/s: p50 {figures['p50_ms']} ms, "
        f"p99 {figures['p99_ms']} ms (target <= 5), max {figures['max_ms']} ms"
    )
    emit(dict(figures))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--produce":
        produce(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        main()
