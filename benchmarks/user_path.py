"""The path users run: ``tidings relay`` and ``tidings consume`` as two CLI processes.

PostgreSQL outbox -> RabbitMQ -> a consuming context whose handler writes one effect
row per event (``user_path_app.py``, written as the tutorial writes handlers), against
a hand-written pipeline of two processes doing the same observable work
(``_user_path_raw.py``: asyncpg + aio-pika, SKIP LOCKED relay with pipelined confirms,
batched inbox and effect inserts). Same exchange type, same quorum queue type, same
outbox, the same inbox and effect rows committed together.

Throughput: a backlog of ``--events`` rows; the consumer process starts first, then
the relay; rate = events / (last effect - first effect), from the effect rows' own
``time.monotonic()`` stamps, so process start-up is left out on both sides. Rounds
alternate the order of the sides. ``ratio_handle`` (a plain ``handle`` adding one
mapped object to the session), ``ratio_execute`` (a plain ``handle`` running one
``insert`` per event) and ``ratio_batch`` (``handle_batch``) are tidings' best rate
over the hand-written one's.

Latency: relay and consumer running, a producer process commits 250 events/s through
tidings; latency = effect stamp - the moment the producer's commit returned (the
first second left out). ``p50_ratio`` and ``p99_ratio`` are tidings' over the
hand-written pipeline's (the plain ``handle`` style).

    python benchmarks/user_path.py            # 50,000 events x 2 rounds; 15 s paced
    python benchmarks/user_path.py --quick    # 5,000 events x 1 round; 5 s paced
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aio_pika
from sqlalchemy import create_engine, text

from _consume_common import declare_queue
from _harness import (
    emit,
    postgres_database,
    reachable,
    reset_tables,
    start_process,
    stop_processes,
)
from _relay_common import ThingUpdatedIntegrationEvent, clear_outbox, fill_backlog, make_context
from relay_latency import RATE, paced_commits, percentiles
from tidings.transports import open_transport

HERE = Path(__file__).resolve().parent
AMQP = "amqp://guest:guest@127.0.0.1:5672/"
EXCHANGE = "tidings.bench-user"
BROKER_URL = f"{AMQP}?exchange={EXCHANGE}"
GROUP = "bench-user"
QUEUE = f"tidings.{GROUP}"
RAW_QUEUE = "bench.user-raw"
RAW_EXCHANGE = "bench.user-raw"  # its own topic exchange: each side gets only its events
RAW_GROUP = "bench-user-raw"
TARGETS = {"ratio_handle": 0.8, "ratio_batch": 1.0, "p50_ratio": 1.3, "p99_ratio": 1.5}


def _psql(url: str) -> Any:
    return create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


class Side:
    """One pipeline: how to start its consumer and relay processes."""

    def __init__(self, name: str, out_url: str, in_url: str, style: str = "handle") -> None:
        self.name, self.out_url, self.in_url, self.style = name, out_url, in_url, style

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "USER_PATH_PRODUCER_DB": self.out_url,
            "USER_PATH_CONSUMER_DB": self.in_url,
            "USER_PATH_BROKER": BROKER_URL,
            "USER_PATH_STYLE": self.style,
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        }

    def start(self, role: str) -> subprocess.Popen[str]:
        if self.name == "raw":
            arguments = (
                [self.out_url, AMQP, RAW_EXCHANGE]
                if role == "relay"
                else [self.in_url, AMQP, RAW_QUEUE, RAW_GROUP]
            )
            command = [sys.executable, str(HERE / "_user_path_raw.py"), role, *arguments]
        else:
            target = "user_path_app:producer" if role == "relay" else "user_path_app:consumer"
            command = [sys.executable, "-m", "tidings", role, target]
        return start_process(command, HERE, self._env())


def _effects(url: str) -> list[tuple[str, float]]:
    engine = _psql(url)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT event_id, at FROM bench_user_effects")).all()
    engine.dispose()
    return [(row[0], row[1]) for row in rows]


def _wait_for_effects(url: str, count: int, timeout: float) -> None:
    engine = _psql(url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                done = connection.execute(text("SELECT count(*) FROM bench_user_effects"))
                if done.scalar_one() >= count:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"fewer than {count} effects after {timeout:.0f} s")
    finally:
        engine.dispose()


def _empty_consumer(url: str) -> None:
    engine = _psql(url)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM bench_user_effects"))
        connection.execute(text("DELETE FROM tidings_inbox"))
    engine.dispose()


def throughput_round(side: Side, events: int, start: int) -> float:
    """Events per second through ``side`` over a backlog of ``events``."""
    out = _psql(side.out_url)
    clear_outbox(out)
    _empty_consumer(side.in_url)
    fill_backlog(out, events, start=start)
    out.dispose()
    consumer = side.start("consume")
    relay = side.start("relay")
    try:
        _wait_for_effects(side.in_url, events, timeout=events / 200 + 60)
    finally:
        stop_processes(relay, consumer)
    stamps = [at for _, at in _effects(side.in_url)]
    if len(stamps) != events:
        raise RuntimeError(f"{side.name}: {len(stamps)} effects for {events} events")
    return events / (max(stamps) - min(stamps))


def latency_run(side: Side, seconds: float) -> dict[str, float]:
    count = int(seconds * RATE)
    out = _psql(side.out_url)
    clear_outbox(out)
    out.dispose()
    _empty_consumer(side.in_url)
    consumer = side.start("consume")
    relay = side.start("relay")
    try:
        time.sleep(1.0)  # both connected and idle before the first commit
        committed = asyncio.run(paced_commits(side.out_url, count))
        _wait_for_effects(side.in_url, count, timeout=60)
    finally:
        stop_processes(relay, consumer)
    return percentiles(committed, dict(_effects(side.in_url)))


async def prepare_broker() -> None:
    """The group's queue as tidings declares it; the raw queue alike on its own exchange."""
    transport = open_transport(BROKER_URL)
    await transport.connect()
    await transport.declare_subscription(GROUP, {ThingUpdatedIntegrationEvent.event_type})
    await transport.close()
    connection = await aio_pika.connect(AMQP)
    channel = await connection.channel()
    await channel.declare_exchange(RAW_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    await declare_queue(channel, RAW_QUEUE)
    queue = await channel.get_queue(RAW_QUEUE)
    await queue.bind(RAW_EXCHANGE, routing_key=ThingUpdatedIntegrationEvent.event_type)
    for name in (QUEUE, RAW_QUEUE):
        await (await channel.get_queue(name)).purge()
    await connection.close()


async def remove_broker_state() -> None:
    connection = await aio_pika.connect(AMQP)
    channel = await connection.channel()
    for name in (QUEUE, RAW_QUEUE):
        await channel.queue_delete(name)
    for exchange in (EXCHANGE, RAW_EXCHANGE):
        await channel.exchange_delete(exchange)
    await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 events x 1 round; 5 s")
    parser.add_argument("--events", type=int, help="backlog per round (default 50,000)")
    parser.add_argument("--rounds", type=int, help="throughput rounds (default 2)")
    parser.add_argument("--seconds", type=float, help="paced latency run (default 15)")
    arguments = parser.parse_args()
    events = arguments.events or (5_000 if arguments.quick else 50_000)
    rounds = arguments.rounds or (1 if arguments.quick else 2)
    seconds = arguments.seconds or (5.0 if arguments.quick else 15.0)
    out_url, in_url = (
        postgres_database("tidings_bench_user"),
        postgres_database("tidings_bench_user_in"),
    )
    if out_url is None or in_url is None or not reachable(5672):
        print("PostgreSQL or RabbitMQ unreachable on 127.0.0.1: nothing to measure")
        emit({})
        return
    reset_tables(out_url)
    reset_tables(in_url, "bench_user_effects")
    make_context(out_url, broker_url=BROKER_URL).dispose()
    from user_path_app import consumer, effect_tables

    consumer.database_url = in_url
    consumer.create_tables()
    effect_tables.create_all(consumer.engine)
    consumer.dispose()
    asyncio.run(prepare_broker())
    sides = {
        "raw": Side("raw", out_url, in_url),
        "handle": Side("tidings", out_url, in_url, "handle"),
        "execute": Side("tidings", out_url, in_url, "execute"),
        "batch": Side("tidings", out_url, in_url, "batch"),
    }
    best = dict.fromkeys(sides, 0.0)
    print(f"{events:,} events x {rounds} rounds; {seconds:.0f} s at {RATE}/s")
    try:
        for round_number in range(rounds):
            order = list(sides) if round_number % 2 == 0 else list(reversed(sides))
            rates = {}
            for name in order:
                rates[name] = throughput_round(sides[name], events, round_number * events)
                best[name] = max(best[name], rates[name])
            print(
                f"round {round_number + 1}: "
                + ", ".join(f"{name} {rate:,.0f}/s" for name, rate in rates.items())
            )
        paced = {name: latency_run(sides[name], seconds) for name in ("raw", "handle")}
    finally:
        asyncio.run(remove_broker_state())
    figures = {
        "ratio_handle": round(best["handle"] / best["raw"], 3),
        "ratio_execute": round(best["execute"] / best["raw"], 3),
        "ratio_batch": round(best["batch"] / best["raw"], 3),
        "p50_ratio": round(paced["handle"]["p50_ms"] / paced["raw"]["p50_ms"], 3),
        "p99_ratio": round(paced["handle"]["p99_ms"] / paced["raw"]["p99_ms"], 3),
        "handle_per_s": round(best["handle"]),
        "execute_per_s": round(best["execute"]),
        "batch_per_s": round(best["batch"]),
        "raw_per_s": round(best["raw"]),
        "p50_ms": paced["handle"]["p50_ms"],
        "p99_ms": paced["handle"]["p99_ms"],
        "raw_p50_ms": paced["raw"]["p50_ms"],
        "raw_p99_ms": paced["raw"]["p99_ms"],
        "events": events,
        "rounds": rounds,
    }
    for key, target in TARGETS.items():
        sense = ">=" if key.startswith("ratio") else "<="
        print(f"{key} {figures[key]} (target {sense} {target})")
    emit(figures)


if __name__ == "__main__":
    main()
