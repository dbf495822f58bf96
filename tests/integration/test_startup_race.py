"""Relay and consumer started at the same moment on a backlog: nothing is lost.

The way the README starts a system: ``tidings relay`` for the producing context and
``tidings consume`` for the consuming one, as two processes started together, while
the producer's outbox already holds 10,000 events. On a broker that routes by type
(RabbitMQ, NATS, Pub/Sub) the relay can publish before the consumer has declared its
subscription; the broker confirms and drops such events. Before issue 12 the relay
counted them as sent (2,000 events lost, nothing said). Now the transport reports them
unroutable and the relay holds the outbox until the subscription exists (or, past
``--unrouted-grace``, archives them as unrouted for ``tidings outbox replay
--unrouted``); on a shared log a group declared late starts at the beginning.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import relay_app, relay_brokers, startup_app
from tests.support.consumer_infra import new_tag
from tests.support.relay_processes import ROOT, environment
from tidings.consumer import Consumer
from tidings.outbox.relay import Relay
from tidings.transports.memory import MemoryTransport

BACKLOG = 10_000
DEADLINE = 60.0  # seconds for everything to be handled: a bound, not the expectation


@contextlib.contextmanager
def _contexts(tmp_path: Path, broker_url: str) -> Iterator[tuple[str, str]]:
    """The producer's outbox and the consumer's database (SQLite files), created."""
    outbox_url = f"sqlite:///{tmp_path / 'producer.db'}"
    consumer_url = f"sqlite:///{tmp_path / 'consumer.db'}"
    producer = relay_app.build(outbox_url, broker_url)
    consumer = startup_app.build(consumer_url, broker_url)
    producer.dispose()
    consumer.dispose()
    yield outbox_url, consumer_url


async def _wait_handled(consumer_url: str, expected: int, processes: list[object]) -> int:
    engine = startup_app.build(consumer_url, "memory://unused", create=False).engine
    try:
        deadline = time.monotonic() + DEADLINE
        distinct = 0
        while time.monotonic() < deadline:
            rows, distinct = startup_app.handled(engine)
            assert rows == distinct, f"{rows - distinct} events were handled twice"
            if distinct >= expected:
                return distinct
            for process in processes:
                code = getattr(process, "returncode", None)
                assert code is None, f"a process exited early ({code})"
            await asyncio.sleep(0.2)
        return distinct
    finally:
        engine.dispose()


async def _stop(process: asyncio.subprocess.Process) -> bytes:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    try:
        _out, err = await asyncio.wait_for(process.communicate(), timeout=20)
    except TimeoutError:
        process.kill()
        _out, err = await process.communicate()
    return err or b""


@pytest.mark.parametrize("kind", [kind for kind in relay_brokers.KINDS if kind != "memory"])
async def test_relay_and_consumer_started_together_on_a_backlog_lose_nothing(
    kind: str, tmp_path: Path
) -> None:
    tag = new_tag()
    broker_url = relay_brokers.broker_url(kind, tag, tmp_path)
    with _contexts(tmp_path, broker_url) as (outbox_url, consumer_url):
        producer = relay_app.build(outbox_url, broker_url, create=False)
        relay_app.publish_ticks(producer, 0, BACKLOG, per_transaction=1000)
        producer.dispose()
        env = environment(
            outbox_url,
            broker_url,
            **{startup_app.DATABASE_ENV: consumer_url, startup_app.BROKER_ENV: broker_url},
        )
        tidings = str(Path(sys.executable).with_name("tidings"))

        def start(*args: str) -> asyncio.Future[asyncio.subprocess.Process]:
            return asyncio.ensure_future(
                asyncio.create_subprocess_exec(
                    tidings,
                    *args,
                    env=env,
                    cwd=ROOT,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE,
                )
            )

        started = time.monotonic()
        relay, consumer = await asyncio.gather(
            start("relay", "tests.support.relay_app:context"),
            start("consume", "tests.support.startup_app:context"),
        )
        errors = b""
        try:
            handled = await _wait_handled(consumer_url, BACKLOG, [relay, consumer])
            took = time.monotonic() - started
        finally:
            for process in (relay, consumer):
                errors += await _stop(process)
            await relay_brokers.remove(kind, tag, [startup_app.NAME])
        assert handled == BACKLOG, (
            f"{kind}: {handled} of {BACKLOG} handled within {DEADLINE:g} s; "
            f"stderr: {errors.decode(errors='replace')[-2000:]}"
        )
        print(f"{kind}: {BACKLOG} events handled {took:.1f} s after both processes started")


async def test_memory_relay_and_consumer_started_together_lose_nothing(tmp_path: Path) -> None:
    """The memory broker routes by type and lives in one process: relay and consumer
    started as tasks at the same moment, on the same backlog."""
    broker_url = f"memory://startup-{new_tag()}"
    with _contexts(tmp_path, broker_url) as (outbox_url, consumer_url):
        producer = relay_app.build(outbox_url, broker_url, create=False)
        relay_app.publish_ticks(producer, 0, BACKLOG, per_transaction=1000)
        consuming = startup_app.build(consumer_url, broker_url, create=False)
        relay = Relay(producer)
        consumer = Consumer(consuming)
        tasks = [asyncio.create_task(relay.run()), asyncio.create_task(consumer.run())]
        try:
            async with asyncio.timeout(DEADLINE):
                while consumer.stats.handled < BACKLOG:
                    await asyncio.sleep(0.1)
        finally:
            await relay.stop()
            await consumer.stop()
            await asyncio.gather(*tasks)
            await producer.adispose()
            await consuming.adispose()
            MemoryTransport.discard_broker(broker_url)
        assert await _wait_handled(consumer_url, BACKLOG, []) == BACKLOG
        assert consumer.stats.duplicates == 0
        assert relay.stats.unroutable == 0
