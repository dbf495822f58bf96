"""``relay.py --relays N``: N relay processes sharing one PostgreSQL outbox by partitions.

Per broker, ``relay_scaling_<broker>`` is the events/s that N relay processes deliver
draining a backlog, divided by the events/s of one relay process, in the same run,
rounds interleaved, best round of each side. Both sides are measured the same way:
the relay processes run (``Relay.run``, as ``tidings relay`` does) and have balanced
the outbox's 16 partitions between them before the backlog is committed in one
transaction; the clock runs from that commit (NOTIFY wakes the relays) until no row
is pending. ``relay_scaling_null`` is the same with a transport that confirms at once:
the relay side's own scaling, where no broker holds it back. ``relay_scaling`` is the
minimum over the real brokers measured.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from typing import Any

from sqlalchemy import text

from _relay_common import SOURCE, NullTransport, Timed, clear_outbox, fill_backlog, sync_engine

# Short leases: relays joining find their share within a second.
LEASE_TTL = 1.5
GROUP = "bench-relay-scaling"


def worker(database_url: str, broker_url: str) -> None:
    """One relay process (``--relay-worker``) until SIGTERM."""
    from tidings import BoundedContext
    from tidings.outbox import Relay

    async def main() -> None:
        context = BoundedContext(SOURCE, database_url=database_url, broker_url=broker_url)
        transport = Timed(NullTransport("null://")) if broker_url == "null://" else None
        relay = Relay(
            context,
            transport,
            batch_size=500,
            lease_ttl=LEASE_TTL,
            max_idle_interval=0.05,
            complete_after_commit=False,
        )
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(relay.stop()))
        try:
            await relay.run()
        finally:
            await context.adispose()
        print(json.dumps({"published": relay.stats.published}), flush=True)

    asyncio.run(main())


def _balanced(engine: Any, relays: int) -> bool:
    """True once ``relays`` live relays hold every partition, none above its share."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT owner, count(*) FROM tidings_relay_partitions "
                "WHERE owner IS NOT NULL AND expires_at > now() GROUP BY owner"
            )
        ).all()
        total = connection.execute(text("SELECT count(*) FROM tidings_relay_partitions")).scalar()
    held = [int(count) for _, count in rows]
    return len(held) == relays and sum(held) == total and max(held) <= -(-total // relays)


def _pending(engine: Any) -> bool:
    with engine.connect() as connection:
        return (
            connection.execute(
                text("SELECT 1 FROM tidings_outbox WHERE published_at IS NULL LIMIT 1")
            ).first()
            is not None
        )


def drain_rate(database_url: str, broker_url: str, relays: int, events: int, start: int) -> float:
    """Events/s of ``relays`` relay processes draining a backlog of ``events``."""
    engine = sync_engine(database_url)
    clear_outbox(engine)
    processes = [
        subprocess.Popen(
            [sys.executable, __file__, "--relay-worker", database_url, broker_url],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(relays)
    ]
    try:
        deadline = time.monotonic() + 30
        while not _balanced(engine, relays):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{relays} relays did not balance the partitions in 30 s")
            time.sleep(0.05)
        committed = time.monotonic()
        fill_backlog(engine, events, start=start)
        deadline = committed + 300
        while _pending(engine):
            if time.monotonic() > deadline:
                raise RuntimeError("the relays did not drain the backlog in 300 s")
            time.sleep(0.02)  # coarse: the poll must not take a core from the relays
        seconds = time.monotonic() - committed
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        published = 0
        for process in processes:
            out, _ = process.communicate(timeout=30)
            lines = out.strip().splitlines()
            if lines:
                published += json.loads(lines[-1])["published"]
        engine.dispose()
    if published < events:
        raise RuntimeError(f"the relays published {published} of {events} events")
    return events / seconds


def measure(
    name: str, database_url: str, broker_url: str, *, relays: int, events: int, rounds: int
) -> dict[str, float]:
    """Best events/s of one relay and of ``relays`` relays, rounds interleaved."""
    best = {"one": 0.0, "many": 0.0}
    drain_rate(database_url, broker_url, 1, 1000, 0)  # warm-up: broker structures, caches
    for round_number in range(rounds):
        base = (round_number + 1) * 10 * events
        one = drain_rate(database_url, broker_url, 1, events, base)
        many = drain_rate(database_url, broker_url, relays, events, base + events)
        best["one"], best["many"] = max(best["one"], one), max(best["many"], many)
        print(
            f"  {name} round {round_number + 1}: 1 relay {one:,.0f}/s, "
            f"{relays} relays {many:,.0f}/s ({many / one:.2f})",
            flush=True,
        )
    return best


async def _declare(broker_url: str) -> None:
    """A subscribed group, as a deployment has: events no subscription takes are held."""
    from _relay_common import ThingUpdatedIntegrationEvent
    from tidings.transports import open_transport

    async with open_transport(broker_url) as transport:
        await transport.declare_subscription(GROUP, {ThingUpdatedIntegrationEvent.event_type})


def report(
    brokers: list[tuple[str, str]], database_url: str, *, relays: int, events: int, rounds: int
) -> dict[str, object]:
    """The ``relay_scaling`` figures for ``brokers`` and the instant transport."""
    from _harness import remove_broker_state, reset_tables
    from _relay_common import make_context

    figures: dict[str, object] = {"relays": relays}
    scaling: list[float] = []
    for name, broker_url in [*brokers, ("null", "null://")]:
        reset_tables(database_url)
        make_context(database_url).dispose()
        print(f"{name}: {events:,} events x {rounds} rounds, 1 vs {relays} relays", flush=True)
        try:
            if name != "null":
                asyncio.run(_declare(broker_url))
            best = measure(
                name, database_url, broker_url, relays=relays, events=events, rounds=rounds
            )
        finally:
            if name != "null":
                asyncio.run(remove_broker_state(broker_url, [GROUP]))
        ratio = best["many"] / best["one"]
        figures[f"relay_scaling_{name}"] = round(ratio, 3)
        figures[f"{name}_one_relay_per_s"] = round(best["one"])
        figures[f"{name}_{relays}_relays_per_s"] = round(best["many"])
        if name != "null":
            scaling.append(ratio)
        print(f"relay_scaling_{name}: {ratio:.3f}", flush=True)
    if scaling:
        figures["relay_scaling"] = round(min(scaling), 3)
    return figures


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--relay-worker":
        worker(sys.argv[2], sys.argv[3])
