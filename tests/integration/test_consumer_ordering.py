"""Per-key order with two competing consumers while one key fails (DESIGN.md guarantee 4).

Two consumers of one context, each on its own broker connection, share a stream of 20
keys. One key's event fails three times before succeeding: that key's later events wait
behind it, every other key keeps flowing meanwhile, and every key's effects are written
in publish order.

Where order holds with competing consumers:

* in-memory broker: a key is held by the consumer with an unacknowledged delivery of it;
* embedded SQLite broker: a partition is leased to one consumer at a time;
* RabbitMQ: only with ``?single_active_consumer=true`` (the second consumer is a hot
  standby). With the default settings RabbitMQ hands consecutive messages of one key to
  both consumers, which can then commit them out of order, so it is not tested there.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import consumer_app
from tests.support.consumer_infra import (
    declare,
    effects_by_product,
    new_tag,
    postgres_database,
    price_changed,
    rabbitmq_url,
    remove_rabbitmq,
    running,
    wait_until,
)
from tidings import BoundedContext, RetryPolicy
from tidings.consumer import Consumer
from tidings.transports import open_transport
from tidings.transports.memory import MemoryTransport

KEYS = 20
PER_KEY = 30
FLAKY = "product-3"


class FailThreeTimes:
    """Fails the 6th event of the flaky key three times; records when each key was handled."""

    def __init__(self) -> None:
        self.failures: list[float] = []
        self.calls: list[tuple[float, str]] = []

    def __call__(self, event: consumer_app.ProductPriceChangedIntegrationEvent) -> None:
        now = time.monotonic()
        self.calls.append((now, event.product_id))
        if event.product_id == FLAKY and event.seq == 5 and len(self.failures) < 3:
            self.failures.append(now)
            raise ConnectionError("the price service is restarting")


@dataclass
class Stack:
    database_url: str
    broker_url: str
    name: str


@pytest.fixture(params=["memory", "sqlite-broker", "rabbitmq-single-active-consumer"])
async def stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    tag = new_tag()
    name = f"basket_{tag}"
    if request.param == "memory":
        # A prefetch below the key count: one consumer cannot hold every key at once, so
        # the two share the work however their start-up interleaves.
        url = f"memory://consumer-{tag}?prefetch=8"
        yield Stack(f"sqlite:///{tmp_path / 'basket.db'}", url, name)
        MemoryTransport.discard_broker(url)
    elif request.param == "sqlite-broker":
        yield Stack(
            f"sqlite:///{tmp_path / 'basket.db'}",
            f"sqlite:///{tmp_path / 'broker.db'}?lease=1",
            name,
        )
    else:
        with postgres_database(tag) as database_url:
            try:
                yield Stack(database_url, rabbitmq_url(tag, single_active_consumer="true"), name)
            finally:
                await remove_rabbitmq(tag, [name])


async def test_each_key_keeps_its_order_across_two_consumers_while_one_key_retries(
    stack: Stack,
) -> None:
    hook = FailThreeTimes()
    basket: BoundedContext = consumer_app.build_basket(
        stack.database_url, stack.broker_url, stack.name, before=hook
    )
    retry = RetryPolicy(initial_delay=0.1, max_delay=1.0, jitter=0.0)
    consumers = [
        Consumer(basket, open_transport(stack.broker_url), immediate_retries=0, retry=retry)
        for _ in range(2)
    ]
    try:
        await declare(consumers[0])
        async with open_transport(stack.broker_url) as producer, running(*consumers):
            if stack.broker_url.startswith("sqlite:"):
                # Both consumers hold partitions before the first event, so both work.
                await wait_until(
                    lambda: _partition_owners(stack.broker_url, stack.name) == 2,
                    what="the partitions shared by both consumers",
                )
            for seq in range(PER_KEY):
                batch = [price_changed(f"product-{key}", seq) for key in range(KEYS)]
                await producer.publish_batch("catalog", batch)
            await wait_until(
                lambda: sum(c.stats.handled for c in consumers) == KEYS * PER_KEY,
                what="every event handled",
            )

        effects = effects_by_product(basket.engine)
        assert effects == {f"product-{key}": list(range(PER_KEY)) for key in range(KEYS)}
        assert len(hook.failures) == 3
        recovered = next(
            moment for moment, key in hook.calls if key == FLAKY and moment > hook.failures[-1]
        )
        others_meanwhile = {
            key for moment, key in hook.calls if hook.failures[0] < moment < recovered
        } - {FLAKY}
        assert len(others_meanwhile) >= 5, "other keys stood still while one key waited"
        assert sum(c.stats.dead_lettered for c in consumers) == 0
        shares = sorted(c.stats.handled for c in consumers)
        if "single_active_consumer" in stack.broker_url:
            assert shares[0] == 0  # the other consumer is a hot standby
        else:
            assert shares[0] > 0, "both consumers shared the work"
    finally:
        await basket.adispose()


def _partition_owners(broker_url: str, group: str) -> int:
    path = broker_url.removeprefix("sqlite:///").split("?", 1)[0]
    with contextlib.closing(sqlite3.connect(path)) as db:
        (owners,) = db.execute(
            "SELECT count(DISTINCT owner) FROM tidings_broker_partitions WHERE group_name = ?",
            (group,),
        ).fetchone()
    return int(owners)
