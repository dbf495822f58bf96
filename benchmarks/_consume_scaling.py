"""``consume.py --consumers N``: N ``tidings consume`` processes of one group against one.

Per broker, ``consumer_scaling_<broker>`` is the events/s at which N consumer processes
drain a backlog, divided by the events/s of one, in the same run, rounds alternating
which side goes first, best round of each side. ``consumer_scaling`` is the minimum over
the brokers measured (RabbitMQ and Kafka).

Each side: the effect and inbox tables are emptied, a backlog of ``events`` is published
through the transport's own ``publish_batch`` (RabbitMQ through the exchange, so a
sharded ``?shards=4`` topology gets it too), then N processes start as users start them
(``tidings consume _consume_scaling:context``). Process start-up and joining the group
(a Kafka rebalance) are not what is measured: the clock starts once every process has
written its first effect row (each has its share of the group by then) and stops when
the backlog's last effect is committed; the rate is the effects written in between over
that time. Each effect row names the process that wrote it, so the output shows how the
work was shared.

On 2 cores a CPU-bound consumer cannot scale: ``--handler-io-ms X`` makes the handler
await ``asyncio.sleep(X / 1000)`` once per micro-batch (before its one insert), as a
handler calling a slow service once per batch would; N processes then wait in parallel.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, insert, text

from _consume_common import make_events
from _relay_common import SOURCE, ThingUpdatedIntegrationEvent, sync_engine
from tidings import BoundedContext, IntegrationEventHandler
from tidings.transports import open_transport

DATABASE_ENV = "TIDINGS_BENCH_SCALING_DATABASE_URL"
BROKER_ENV = "TIDINGS_BENCH_SCALING_BROKER_URL"
IO_ENV = "TIDINGS_BENCH_HANDLER_IO_MS"
NAME_ENV = "TIDINGS_BENCH_SCALING_GROUP"
HERE = Path(__file__).resolve().parent
TIDINGS = Path(sys.executable).with_name("tidings")
EVENT_TYPE = ThingUpdatedIntegrationEvent.event_type

metadata = MetaData()
effects = Table(
    "bench_scaling_effects",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("thing_id", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("pid", Integer, nullable=False),
)


class RecordEffectAfterSlowCall(IntegrationEventHandler):
    """One effect row per event naming this process, one insert per micro-batch, after
    awaiting ``$TIDINGS_BENCH_HANDLER_IO_MS`` once per batch (a slow service's reply)."""

    def __init__(self, context: BoundedContext, io_seconds: float) -> None:
        self._context = context
        self._io_seconds = io_seconds
        self._pid = os.getpid()

    async def handle(self, event: ThingUpdatedIntegrationEvent) -> None:
        await self.handle_batch([event])

    async def handle_batch(self, events: Sequence[ThingUpdatedIntegrationEvent]) -> None:
        if self._io_seconds:
            await asyncio.sleep(self._io_seconds)
        await self._context.async_session.execute(
            insert(effects),
            [
                {
                    "event_id": str(event.event_id),
                    "thing_id": event.thing_id,
                    "seq": event.seq,
                    "pid": self._pid,
                }
                for event in events
            ],
        )


def build(
    database_url: str, broker_url: str, group: str, io_ms: float, *, create: bool
) -> BoundedContext:
    """The consuming context ``group`` (its name is the consumer group)."""
    context = BoundedContext(group, database_url=database_url, broker_url=broker_url)
    if create:
        context.create_tables()
        metadata.create_all(context.engine)
    context.subscribe(RecordEffectAfterSlowCall(context, io_ms / 1000))
    return context


def context() -> BoundedContext:
    """What ``tidings consume _consume_scaling:context`` loads (URLs from the environment)."""
    return build(
        os.environ[DATABASE_ENV],
        os.environ[BROKER_ENV],
        os.environ[NAME_ENV],
        float(os.environ.get(IO_ENV, "0")),
        create=False,
    )


# -- one side of a round ------------------------------------------------------------------
async def _declare(broker_url: str, group: str) -> int:
    """The group's subscription, before any backlog (a routing broker keeps it all);
    its shard count."""
    async with open_transport(broker_url) as transport:
        await transport.declare_subscription(group, {EVENT_TYPE})
        return transport.shard_count(group)


async def _fill(broker_url: str, count: int, start: int) -> None:
    """Publish ``count`` events (seq from ``start``) as the relay would, 1,000 a batch."""
    async with open_transport(broker_url) as transport:
        for first in range(start, start + count, 1000):
            batch = make_events(min(1000, start + count - first), start=first)
            await transport.publish_batch(SOURCE, batch)


def _progress(engine: Any) -> tuple[int, int]:
    """(effect rows, processes that wrote one)."""
    with engine.connect() as connection:
        rows, processes = connection.execute(
            text("SELECT count(*), count(DISTINCT pid) FROM bench_scaling_effects")
        ).one()
    return int(rows), int(processes)


def drain_rate(
    database_url: str,
    broker_url: str,
    group: str,
    consumers: int,
    events: int,
    start: int,
    io_ms: float,
) -> tuple[float, list[int]]:
    """Events/s of ``consumers`` processes draining a backlog of ``events``, and the
    effects each process wrote."""
    engine = sync_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE tidings_inbox, bench_scaling_effects"))
    asyncio.run(_fill(broker_url, events, start))
    env = {
        **os.environ,
        DATABASE_ENV: database_url,
        BROKER_ENV: broker_url,
        NAME_ENV: group,
        IO_ENV: str(io_ms),
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    processes = [
        subprocess.Popen(
            [str(TIDINGS), "consume", "_consume_scaling:context"],
            cwd=HERE,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        for _ in range(consumers)
    ]
    try:
        spawned = time.monotonic()
        deadline = spawned + 120
        rows, writers = _progress(engine)
        first: tuple[float, int] | None = None  # (when, effects) at the first effect seen
        while writers < consumers and rows < events:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{consumers} consumers did not all start within 120 s")
            if any(process.poll() is not None for process in processes):
                raise RuntimeError("a consumer process exited by itself")
            time.sleep(0.05)  # coarse: the poll must not take a core from the consumers
            rows, writers = _progress(engine)
            if rows and first is None:
                first = (time.monotonic(), rows)
        started, at_start = time.monotonic(), rows
        if rows >= events:
            # A backlog too small for this machine (--smoke): time it from its first effect.
            print(f"    warning: all {events} handled before the {consumers} processes all ran")
            started, at_start = first or (spawned, 0)
        deadline = started + 600
        while rows < events:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the consumers handled {rows} of {events} events in 600 s")
            time.sleep(0.05)
            rows, _ = _progress(engine)
        seconds = max(time.monotonic() - started, 0.05)
        with engine.connect() as connection:
            shares = [
                int(count)
                for (count,) in connection.execute(
                    text("SELECT count(*) FROM bench_scaling_effects GROUP BY pid ORDER BY 1 DESC")
                )
            ]
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        engine.dispose()
    if at_start > events // 2:
        print(f"    warning: {at_start} of {events} handled before all {consumers} started")
    return (events - at_start) / seconds, shares


def measure(
    name: str,
    database_url: str,
    broker_url: str,
    group: str,
    *,
    consumers: int,
    events: int,
    rounds: int,
    io_ms: float,
    warm_up: bool,
) -> dict[str, float]:
    """Best events/s of one consumer process and of ``consumers``, rounds alternating."""
    best = {"one": 0.0, "many": 0.0}
    if warm_up:  # topology, broker and database caches
        drain_rate(database_url, broker_url, group, 1, 1000, 0, io_ms)
    for round_number in range(rounds):
        base = (round_number + 1) * 10 * events
        sides = [("one", 1), ("many", consumers)]
        if round_number % 2:
            sides.reverse()
        rates: dict[str, float] = {}
        for offset, (side, count) in enumerate(sides):
            rate, shares = drain_rate(
                database_url, broker_url, group, count, events, base + offset * events, io_ms
            )
            rates[side] = rate
            best[side] = max(best[side], rate)
            print(f"    {count} consumer(s): {rate:,.0f}/s, effects per process {shares}")
        print(
            f"  {name} round {round_number + 1}: 1 consumer {rates['one']:,.0f}/s, "
            f"{consumers} consumers {rates['many']:,.0f}/s ({rates['many'] / rates['one']:.2f})",
            flush=True,
        )
    return best


def report(
    brokers: list[tuple[str, str]],
    database_url: str,
    *,
    consumers: int,
    events: int,
    rounds: int,
    io_ms: float,
    warm_up: bool,
) -> dict[str, object]:
    """The ``consumer_scaling`` figures for ``brokers`` ((name, URL) pairs).

    Each broker gets a group named after a random tag: a Kafka broker may keep a
    deleted group's members for a while (Tansu does), which would stall a group reused
    at once."""
    from _harness import remove_broker_state, reset_tables

    figures: dict[str, object] = {
        "consumers": consumers,
        "events": events,
        "rounds": rounds,
        "handler_io_ms": io_ms,
    }
    scaling: list[float] = []
    for name, broker_url in brokers:
        group = f"bench-consume-scaling-{uuid.uuid4().hex[:8]}"
        reset_tables(database_url, effects.name)
        build(database_url, broker_url, group, io_ms, create=True).dispose()
        shards = asyncio.run(_declare(broker_url, group))
        figures[f"{name}_shards"] = shards
        if "shards=" in broker_url and shards == 1:
            # A transport without sharded subscriptions may pass the option on unread.
            print(f"{name}: ?shards= was not applied: plain competing consumers")
        print(f"{name}: {events:,} events x {rounds} rounds, 1 vs {consumers} consumers")
        try:
            best = measure(
                name,
                database_url,
                broker_url,
                group,
                consumers=consumers,
                events=events,
                rounds=rounds,
                io_ms=io_ms,
                warm_up=warm_up,
            )
        finally:
            asyncio.run(remove_broker_state(broker_url, [group]))
        ratio = best["many"] / best["one"]
        figures[f"consumer_scaling_{name}"] = round(ratio, 3)
        figures[f"{name}_one_consumer_per_s"] = round(best["one"])
        figures[f"{name}_{consumers}_consumers_per_s"] = round(best["many"])
        scaling.append(ratio)
        print(f"consumer_scaling_{name}: {ratio:.3f}", flush=True)
    if scaling:
        figures["consumer_scaling"] = round(min(scaling), 3)
    return figures
