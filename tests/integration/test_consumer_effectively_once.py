"""At-least-once delivery, effectively-once effects (DESIGN.md guarantees 3 and 5).

Every event delivered three times has its effect once; a consumer SIGKILLed ten times
during a 20,000-event stream still leaves exactly one effect per event.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.support import consumer_app
from tests.support.consumer_infra import (
    declare,
    effect_counts,
    new_tag,
    postgres_database,
    price_changed,
    pubsub_url,
    rabbitmq_queue_is_empty,
    rabbitmq_url,
    remove_rabbitmq,
    running,
    wait_until,
)
from tests.support.pubsub_admin import remove_topic
from tidings import BoundedContext
from tidings.consumer import Consumer
from tidings.persistence.tables import dead_letters, inbox
from tidings.transports import open_transport
from tidings.transports.memory import MemoryTransport

ROOT = Path(__file__).resolve().parents[2]
MARIADB = pytest.mark.mariadb


@pytest.fixture(
    params=["memory+sqlite", "rabbitmq+postgres", pytest.param("pubsub+mariadb", marks=MARIADB)]
)
async def basket(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BoundedContext]:
    """The basket context on one of the stacks, each with a broker of the test's own."""
    tag = new_tag()
    name = f"basket_{tag}"
    if request.param == "pubsub+mariadb":
        url = pubsub_url(tag)
        context = consumer_app.build_basket(request.getfixturevalue("mariadb_url"), url, name)
        try:
            yield context
        finally:
            await context.adispose()
            await remove_topic(url)
        return
    if request.param == "memory+sqlite":
        url = f"memory://consumer-{tag}"
        context = consumer_app.build_basket(
            f"sqlite:///{tmp_path / 'basket.db'}", url, name, handler="async"
        )
        try:
            yield context
        finally:
            await context.adispose()
            MemoryTransport.discard_broker(url)
        return
    with postgres_database(tag) as database_url:
        context = consumer_app.build_basket(database_url, rabbitmq_url(tag), name)
        try:
            yield context
        finally:
            await context.adispose()
            await remove_rabbitmq(tag, [name])


async def test_every_event_delivered_three_times_has_its_effect_once(
    basket: BoundedContext,
) -> None:
    events = [price_changed(f"product-{i % 10}", i) for i in range(300)]
    # Two competing consumers of the group: copies of one event may meet in either.
    consumers = [Consumer(basket), Consumer(basket, open_transport(basket.broker_url))]
    await declare(consumers[0])

    async with open_transport(basket.broker_url) as producer, running(*consumers):
        # each event twice back to back (often in one micro-batch), then all of them again
        await producer.publish_batch("catalog", [copy for e in events for copy in (e, e)])
        await producer.publish_batch("catalog", events)
        await wait_until(
            lambda: sum(c.stats.handled + c.stats.duplicates for c in consumers) >= 900,
            what="900 deliveries",
        )

    assert effect_counts(basket.engine) == (300, 300)
    assert sum(c.stats.handled for c in consumers) == 300
    duplicates = sum(c.stats.duplicates for c in consumers)
    if basket.broker_url.startswith("pubsub"):
        # Pub/Sub also redelivers by itself when a lease lapses (a loaded machine can
        # renew one late); the inbox absorbs those copies as well.
        assert duplicates >= 600
    else:
        assert duplicates == 600
    with basket.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(inbox)).scalar_one() == 300
        assert connection.execute(select(func.count()).select_from(dead_letters)).scalar_one() == 0


# -- SIGKILL ------------------------------------------------------------------------------
STREAM = 20_000
KILLS = 10


def _reached(context: BoundedContext, effects: int) -> bool:
    return effect_counts(context.engine)[0] >= effects


def _start_consumer(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tidings", "consume", "tests.support.consumer_app:context"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.postgres
@pytest.mark.slow
async def test_a_consumer_killed_ten_times_during_a_stream_leaves_exactly_one_effect_per_event(
    tmp_path: Path,
) -> None:
    tag = new_tag()
    name = f"basket_{tag}"
    url = rabbitmq_url(tag)
    with postgres_database(tag) as database_url:
        basket = consumer_app.build_basket(database_url, url, name)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            consumer_app.DATABASE_ENV: database_url,
            consumer_app.BROKER_ENV: url,
            consumer_app.NAME_ENV: name,
        }
        env.pop(consumer_app.FAILING_ENV, None)
        rng = random.Random(tag)
        try:
            async with open_transport(url) as producer:
                await producer.declare_subscription(name, {consumer_app.PRICE_CHANGED})

                async def stream() -> None:
                    for start in range(0, STREAM, 500):
                        batch = [
                            price_changed(f"product-{i % 100}", i)
                            for i in range(start, start + 500)
                        ]
                        await producer.publish_batch("catalog", batch)
                        await asyncio.sleep(0)

                publishing = asyncio.create_task(stream())
                kill_codes: list[int | None] = []
                for kill in range(1, KILLS + 1):
                    child = _start_consumer(env)
                    # kill somewhere in the middle of its work, at a different point each time
                    threshold = kill * STREAM // (KILLS + 1) + rng.randrange(-300, 300)
                    try:
                        await wait_until(
                            partial(_reached, basket, threshold),
                            timeout=90,
                            what=f"{threshold} effects before kill {kill}",
                        )
                        await asyncio.sleep(rng.random() * 0.05)
                    finally:
                        child.send_signal(signal.SIGKILL)
                        kill_codes.append(await asyncio.to_thread(child.wait, 10))
                await publishing

                survivor = _start_consumer(env)
                try:
                    await wait_until(
                        lambda: effect_counts(basket.engine)[1] >= STREAM,
                        timeout=120,
                        what="every effect after the last restart",
                    )
                    # what is still queued can only be redeliveries: let them come through
                    await wait_until(
                        lambda: rabbitmq_queue_is_empty(name), timeout=60, what="an empty queue"
                    )
                finally:
                    survivor.send_signal(signal.SIGTERM)
                    _, stderr = await asyncio.to_thread(survivor.communicate, timeout=30)
                assert survivor.returncode == 0, stderr.decode()[-2000:]
            assert kill_codes == [-signal.SIGKILL] * KILLS
            assert effect_counts(basket.engine) == (STREAM, STREAM)
            with basket.engine.connect() as connection:
                assert (
                    connection.execute(select(func.count()).select_from(dead_letters)).scalar_one()
                    == 0
                )
        finally:
            basket.dispose()
            await remove_rabbitmq(tag, [name])
