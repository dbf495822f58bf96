"""Acceptance of consumers that scale out: two, then three ``tidings consume`` processes
of one group, one of them SIGKILLed mid-stream and another joining late, while events
of 100 keys keep coming: 0 lost, 0 duplicated effects, 0 per-key order inversions.

The test publishes straight through the transport's ``publish_batch`` (deterministic
and fast: no relay in the way), in chunks, never more than ``AHEAD`` events ahead of
the effects written, so the stream still flows when the third process joins (a quarter
of the events handled) and when the busiest of the first two is SIGKILLed (half of
them). The consuming context writes one effect row per event, with its process id, in
an identity-ordered table; at the end every event has exactly one row and each key's
rows, in insertion order, have increasing ``seq``.

Kafka, the SQLite broker and Pub/Sub keep per-key order with competing consumers as
they are; RabbitMQ, Redis and NATS run with sharded subscriptions (``?shards=4``).
``TIDINGS_SCALING_TEST_EVENTS`` sets the event count (12,000 by default, to stay well
under 90 s per transport on 2 cores).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from tests.support import relay_brokers, scaling_app
from tests.support.consumer_app import PRICE_CHANGED
from tests.support.consumer_infra import new_tag, postgres_database, price_changed, wait_until
from tests.support.relay_processes import ROOT, TIDINGS
from tidings.transports import open_transport
from tidings.transports.base import Transport

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

EVENTS = int(os.environ.get("TIDINGS_SCALING_TEST_EVENTS", "12000"))
KEYS = 100
CHUNK = 250
AHEAD = 1500  # events published but not yet handled, at most
# The longest the effects may stand still: a SIGKILLed consumer's work moves in seconds
# (Kafka session 6 s + rebalance, SQLite broker lease 2 s, shard leases 2 s).
STALL = 25.0
JOIN_AT = EVENTS // 4
KILL_AT = EVENTS // 2

# The emulator never again delivers the ordering keys of a stream that ended without a
# clean close (a SIGKILLed subscriber's), to anyone: see "What Google's Pub/Sub emulator
# does not prove" in docs/operations.md. Google's service redelivers them after the ack
# deadline; strict, so a fixed emulator shows.
_EMULATOR_BLOCKS_KEYS = pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="the Pub/Sub emulator keeps giving ordering keys to a SIGKILLed subscriber's stream",
)
KINDS = [
    "kafka",
    "sqlite",
    pytest.param("pubsub", marks=_EMULATOR_BLOCKS_KEYS),
    "rabbitmq",
    "redis",
    "nats",
]


# A short shard lease: a killed process's shards move to the others within seconds.
CONSUME_OPTIONS = ("--shard-lease-ttl", "2")


@dataclass
class ConsumerProcess:
    """One ``tidings consume APP`` process and where its output goes."""

    role: str
    process: subprocess.Popen[bytes]
    output: Path
    killed: bool = False

    def summary(self) -> str:
        """Its ``stopped: N handled, M duplicates ...`` line, if it stopped gracefully."""
        found = re.search(r"stopped: .*", self.output.read_text(errors="replace"))
        return found.group(0) if found else "(no summary)"


def start_consumer(role: str, env: dict[str, str], directory: Path) -> ConsumerProcess:
    """``tidings consume APP`` as the README starts it (stdout and stderr to a file)."""
    output = directory / f"consumer-{role}.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [str(TIDINGS), "consume", scaling_app.APP, *CONSUME_OPTIONS],
            env=env,
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return ConsumerProcess(role, process, output)


async def publish(transport: Transport, engine: Engine) -> None:
    """Publish ``EVENTS`` events of ``KEYS`` keys in chunks, at most ``AHEAD`` ahead of
    the effects, so that events keep coming whatever the consumers' speed (the test's
    progress waits fail first if the consumers stall)."""
    for first in range(0, EVENTS, CHUNK):

        async def caught_up(first: int = first) -> bool:
            return await asyncio.to_thread(_handled, engine) >= first - AHEAD

        await wait_until(caught_up, timeout=300, what="the consumers")
        seqs = range(first, min(first + CHUNK, EVENTS))
        await transport.publish_batch(
            "catalog", [price_changed(f"product-{s % KEYS}", s) for s in seqs]
        )


def _handled(engine: Engine) -> int:
    """Effect rows so far (cheap enough to poll; the final check counts distinct ids)."""
    return scaling_app.effect_rows(engine)


async def scale_out_and_kill(
    producer: Transport,
    engine: Engine,
    env: dict[str, str],
    directory: Path,
    consumers: list[ConsumerProcess],
) -> int:
    """Start two consumers (into ``consumers``), publish, start a third at ``JOIN_AT``
    effects, SIGKILL the busier of the first two at ``KILL_AT``, wait for every effect.

    Returns the effects written when the victim was killed."""
    consumers.extend(start_consumer(role, env, directory) for role in ("a", "b"))
    publishing = asyncio.create_task(publish(producer, engine))
    try:
        await _progress(engine, JOIN_AT, publishing, consumers)
        consumers.append(start_consumer("late", env, directory))
        await _progress(engine, KILL_AT, publishing, consumers)
        # The busier of the first two: it surely had work in flight.
        shares = await asyncio.to_thread(scaling_app.effects_per_process, engine)
        victim = max(consumers[:2], key=lambda c: shares[c.process.pid])
        victim.process.send_signal(signal.SIGKILL)
        victim.killed = True
        killed_after = await asyncio.to_thread(_handled, engine)
        await _progress(engine, EVENTS, publishing, consumers)
        await publishing
        return killed_after
    finally:
        publishing.cancel()
        await asyncio.gather(publishing, return_exceptions=True)


@pytest.mark.parametrize("kind", KINDS)
async def test_three_consumers_one_killed_one_late_lose_nothing_duplicate_nothing_keep_key_order(
    tmp_path: Path, kind: str
) -> None:
    tag = new_tag()
    name = f"scaling{tag}"
    broker = scaling_app.broker_url(kind, tag, tmp_path)
    consumers: list[ConsumerProcess] = []
    with postgres_database(tag) as database_url:
        env = {
            **os.environ,
            scaling_app.DATABASE_ENV: database_url,
            scaling_app.BROKER_ENV: broker,
            scaling_app.NAME_ENV: name,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
        scaling_app.build(database_url, broker, name).dispose()
        engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            async with open_transport(broker) as producer:
                # Declared first, so that nothing published before a consumer joins is lost.
                await producer.declare_subscription(name, {PRICE_CHANGED})
                if "shards=" in broker:  # a transport may pass an option it lacks on unread
                    assert producer.shard_count(name) == 4, f"{kind} is not sharded by ?shards=4"
                killed_after = await scale_out_and_kill(producer, engine, env, tmp_path, consumers)
                rows, distinct = await asyncio.to_thread(scaling_app.effect_counts, engine)
                inversions = await asyncio.to_thread(scaling_app.order_inversions, engine)
                shares = await asyncio.to_thread(scaling_app.effects_per_process, engine)
        finally:
            codes = _stop(consumers)
            engine.dispose()
            await relay_brokers.remove(kind, tag, [name])

    work = ", ".join(
        f"{c.role}{' (SIGKILLed)' if c.killed else ''} pid {c.process.pid}: "
        f"{shares[c.process.pid]} effects, {c.summary()}"
        for c in consumers
    )
    print(
        f"{kind}: {EVENTS} events of {KEYS} keys; third process joined at {JOIN_AT} handled, "
        f"one SIGKILLed after {killed_after}; {work}"
    )
    assert distinct == EVENTS, f"{EVENTS - distinct} events lost"
    assert rows == EVENTS, f"{rows - distinct} duplicated effects"
    assert not inversions, f"{len(inversions)} per-key order inversions: {inversions[:5]}"
    assert sum(1 for count in shares.values() if count) >= 2, f"the work was not shared: {work}"
    victim = next(c for c in consumers if c.killed)
    assert shares[victim.process.pid], "the SIGKILLed process had handled events"
    assert codes == [0, 0], f"the surviving consumers stop gracefully (exit codes {codes})"


async def _progress(
    engine: Engine,
    handled: int,
    publishing: asyncio.Task[None],
    consumers: list[ConsumerProcess],
) -> None:
    """Wait until ``handled`` effects were written. Fail as soon as the effects stand
    still for ``STALL`` seconds, the publisher failed or a consumer died by itself
    (with its output, to say why)."""
    loop = asyncio.get_running_loop()
    last, moved = -1, loop.time()
    while True:
        if publishing.done():
            publishing.result()  # raises what stopped the publisher
        for consumer in consumers:
            code = consumer.process.poll()
            if code is not None and not consumer.killed:
                tail = consumer.output.read_text(errors="replace")[-2000:]
                raise AssertionError(f"consumer {consumer.role} exited {code}:\n{tail}")
        now = await asyncio.to_thread(_handled, engine)
        if now >= handled:
            return
        if now != last:
            last, moved = now, loop.time()
        elif loop.time() - moved > STALL:
            raise AssertionError(f"no effect for {STALL:g} s at {now} of {handled} effects")
        await asyncio.sleep(0.1)


def _stop(consumers: list[ConsumerProcess]) -> list[int]:
    """SIGTERM the live consumers and their exit codes (SIGKILL after 30 s)."""
    live = [c.process for c in consumers if c.process.poll() is None]
    for process in live:
        process.send_signal(signal.SIGTERM)
    codes = []
    for process in live:
        try:
            codes.append(process.wait(timeout=30))
        except subprocess.TimeoutExpired:
            process.kill()
            codes.append(process.wait())
    return codes
