"""Failing handlers: retried with growing delays, then dead-lettered, then replayed once.

DESIGN.md guarantee 6: handler failures are retried with exponential backoff, then
dead-lettered; dead letters can be listed, inspected and replayed (``Consumer.replay``
and ``tidings dlq``), the inbox still guarding against a second effect.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from tests.support import consumer_app
from tests.support.consumer_infra import (
    declare,
    effect_counts,
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

ROOT = Path(__file__).resolve().parents[2]
FAST = RetryPolicy(initial_delay=0.05, max_delay=1.0, jitter=0.0)


class Attempts:
    """Records when the handler was called per product, failing the first ``failures``."""

    def __init__(self, failing: str, failures: int) -> None:
        self.failing = failing
        self.failures = failures
        self.calls: defaultdict[str, list[float]] = defaultdict(list)

    def __call__(self, event: consumer_app.ProductPriceChangedIntegrationEvent) -> None:
        self.calls[event.product_id].append(time.monotonic())
        if event.product_id == self.failing and len(self.calls[self.failing]) <= self.failures:
            raise ConnectionError(f"attempt {len(self.calls[self.failing])} of a flaky handler")

    def gaps(self) -> list[float]:
        moments = self.calls[self.failing]
        return [later - earlier for earlier, later in pairwise(moments)]


MakeBasket = Callable[..., BoundedContext]


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
async def make_basket(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeBasket]:
    """Basket contexts on SQLite or MariaDB (inbox and dead letters), on one memory broker."""
    made: list[BoundedContext] = []
    url = f"memory://consumer-{new_tag()}"
    database = (
        f"sqlite:///{tmp_path / 'basket.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("mariadb_url")
    )

    def make(**options: Any) -> BoundedContext:
        context = consumer_app.build_basket(database, url, **options)
        made.append(context)
        return context

    yield make
    for context in made:
        await context.adispose()
    MemoryTransport.discard_broker(url)


async def _publish(url: str, *events: Any) -> None:
    async with open_transport(url) as producer:
        await producer.publish_batch("catalog", list(events))


async def test_a_handler_failing_three_times_is_handled_once_after_growing_delays(
    make_basket: MakeBasket,
) -> None:
    attempts = Attempts("flaky", failures=3)
    basket = make_basket(before=attempts)
    consumer = Consumer(basket, immediate_retries=0, retry=FAST, max_attempts=6)
    await declare(consumer)

    async with running(consumer):
        await _publish(basket.broker_url, price_changed("flaky", 1), price_changed("steady", 1))
        await wait_until(lambda: consumer.stats.handled == 2, what="both events handled")

    assert len(attempts.calls["flaky"]) == 4
    first, second, third = attempts.gaps()
    assert 0.05 <= first < second < third
    assert second >= 0.1 and third >= 0.2
    assert effects_by_product(basket.engine) == {"steady": [1], "flaky": [1]}
    assert consumer.stats.dead_lettered == 0


async def test_immediate_retries_come_at_once_and_the_next_ones_after_a_backoff(
    make_basket: MakeBasket,
) -> None:
    attempts = Attempts("flaky", failures=3)
    basket = make_basket(before=attempts)
    slow = RetryPolicy(initial_delay=0.3, max_delay=1.0, jitter=0.0)
    consumer = Consumer(basket, immediate_retries=2, retry=slow)
    await declare(consumer)

    async with running(consumer):
        await _publish(basket.broker_url, price_changed("flaky", 1))
        await wait_until(lambda: consumer.stats.handled == 1, what="the event handled")

    immediate_1, immediate_2, backoff = attempts.gaps()
    assert immediate_1 < 0.2 and immediate_2 < 0.2
    assert backoff >= 0.3
    assert effect_counts(basket.engine) == (1, 1)


async def test_later_events_of_a_failing_key_wait_behind_it_while_other_keys_flow(
    make_basket: MakeBasket,
) -> None:
    attempts = Attempts("flaky", failures=3)
    basket = make_basket(before=attempts)
    consumer = Consumer(basket, immediate_retries=0, retry=FAST)
    await declare(consumer)

    async with running(consumer):
        events = [price_changed(key, seq) for seq in range(5) for key in ("flaky", "steady")]
        await _publish(basket.broker_url, *events)
        await wait_until(lambda: consumer.stats.handled == 10, what="ten events handled")

    assert effects_by_product(basket.engine) == {
        "flaky": [0, 1, 2, 3, 4],
        "steady": [0, 1, 2, 3, 4],
    }
    # every steady event was done while the flaky key's head event was still failing
    assert max(attempts.calls["steady"]) < attempts.calls["flaky"][-1]


async def test_an_always_failing_handler_dead_letters_after_max_attempts_then_replayed_once_fixed(
    make_basket: MakeBasket,
) -> None:
    attempts = Attempts("broken", failures=10**9)
    basket = make_basket(before=attempts)
    consumer = Consumer(basket, immediate_retries=1, retry=FAST, max_attempts=4)
    await declare(consumer)

    async with running(consumer):
        await _publish(basket.broker_url, price_changed("broken", 7), price_changed("fine", 1))
        await wait_until(lambda: consumer.stats.dead_lettered == 1, what="a dead letter")
        await wait_until(lambda: consumer.stats.handled == 1, what="the other event")

    assert len(attempts.calls["broken"]) == 4
    [letter] = await consumer.dead_letters.list()
    assert (letter.reason, letter.attempts, letter.error_type) == (
        "handler_failed",
        4,
        "ConnectionError",
    )
    assert letter.error_message == "attempt 4 of a flaky handler"
    assert letter.partition_key == "broken"
    assert letter.first_failed_at < letter.last_failed_at

    assert await consumer.replay() == (0, 1)  # still broken: stays, with one attempt more
    [still] = await consumer.dead_letters.list()
    assert still.attempts == 5

    attempts.failures = 0  # the fix is deployed
    assert await consumer.replay() == (1, 0)
    assert await consumer.replay() == (0, 0)
    assert await consumer.dead_letters.count() == 0
    assert effects_by_product(basket.engine) == {"fine": [1], "broken": [7]}


# -- the dlq commands, on RabbitMQ and PostgreSQL -------------------------------------------
def _tidings(env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tidings", *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.postgres
async def test_dlq_commands_show_the_failure_and_replay_it_once_the_handler_is_fixed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tag = new_tag()
    name = f"basket_{tag}"
    url = rabbitmq_url(tag)
    app = "tests.support.consumer_app:context"
    with postgres_database(tag) as database_url:
        monkeypatch.setenv(consumer_app.FAILING_ENV, "broken")
        basket = consumer_app.build_basket(database_url, url, name)
        monkeypatch.delenv(consumer_app.FAILING_ENV)
        consumer = Consumer(basket, immediate_retries=0, retry=FAST, max_attempts=3)
        event = price_changed("broken", 5)
        try:
            await declare(consumer)
            async with running(consumer):
                await _publish(url, event)
                await wait_until(lambda: consumer.stats.dead_lettered == 1, what="a dead letter")
        finally:
            await basket.adispose()
            await remove_rabbitmq(tag, [name])

        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            consumer_app.DATABASE_ENV: database_url,
            consumer_app.BROKER_ENV: url,
            consumer_app.NAME_ENV: name,
        }
        listed = _tidings(env, "dlq", "list", app, "--json")
        assert listed.returncode == 0, listed.stderr
        [letter] = json.loads(listed.stdout)
        assert letter["reason"] == "handler_failed"
        assert letter["error_type"] == "RuntimeError"
        assert letter["error_message"] == "price of broken refused"
        assert letter["attempts"] == 3
        assert letter["event_id"] == event.id
        assert letter["event_type"] == consumer_app.PRICE_CHANGED
        first = datetime.fromisoformat(letter["first_failed_at"])
        last = datetime.fromisoformat(letter["last_failed_at"])
        assert first < last

        shown = _tidings(env, "dlq", "show", app, letter["letter_id"], "--json")
        assert shown.returncode == 0, shown.stderr
        details = json.loads(shown.stdout)
        assert details["reason"] == "handler_failed" and details["attempts"] == 3
        assert details["headers"]["cloudEvents:id"] == event.id
        assert json.loads(details["body"]) == json.loads(event.data_json)

        failing = _tidings(
            {**env, consumer_app.FAILING_ENV: "broken"}, "dlq", "replay", app, "--json"
        )
        assert failing.returncode == 1
        assert json.loads(failing.stdout) == {"replayed": 0, "failed": 1}

        replayed = _tidings(env, "dlq", "replay", app, "--json")
        assert replayed.returncode == 0, replayed.stderr
        assert json.loads(replayed.stdout) == {"replayed": 1, "failed": 0}
        assert json.loads(_tidings(env, "dlq", "list", app, "--json").stdout) == []

        check = consumer_app.build_basket(database_url, url, name, create=False)
        try:
            assert effects_by_product(check.engine) == {"broken": [5]}
        finally:
            check.dispose()
