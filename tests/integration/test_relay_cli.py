"""The relay's commands: ``tidings relay``, ``tidings outbox status`` and ``outbox replay``.

Each runs as the ``tidings`` executable against a PostgreSQL outbox, on the context
``tests.support.relay_app:context`` whose URLs come from the environment.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.integration.transports.conformance import collect
from tests.support import relay_app, relay_brokers
from tests.support.relay_processes import APP, ROOT, TIDINGS, environment, tidings_json
from tidings import BoundedContext
from tidings.domain.ids import uuid7
from tidings.outbox import Relay
from tidings.persistence.tables import outbox
from tidings.transports import open_transport

pytestmark = pytest.mark.postgres


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def most_attempts(context: BoundedContext) -> int:
    with context.engine.connect() as connection:
        return int(connection.execute(select(func.max(outbox.c.attempts))).scalar_one() or 0)


async def test_tidings_relay_forwards_the_outbox_then_stops_gracefully_on_sigterm(
    postgres_url: str, tmp_path: Path
) -> None:
    broker = f"sqlite:///{tmp_path / 'broker.db'}"
    context = relay_app.build(postgres_url, broker)
    relay_app.publish_ticks(context, 0, 1000, keys=10)
    async with open_transport(broker) as consumer:
        await consumer.declare_subscription("meters", {relay_app.EVENT_TYPE})
        process = await asyncio.create_subprocess_exec(
            TIDINGS,
            "relay",
            APP,
            env=environment(postgres_url, broker),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            received = await collect(consumer, "meters", {relay_app.EVENT_TYPE}, 1000, timeout=60)
        finally:
            process.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(process.communicate(), timeout=30)

    assert process.returncode == 0
    assert "stopped after 1000 events" in output.decode()
    relay_app.check_arrivals(received, range(1000))
    assert context.outbox_count() == 0
    context.dispose()


async def test_outbox_status_reports_pending_events_lag_and_stuck_rows_with_their_last_error(
    postgres_url: str, tmp_path: Path
) -> None:
    port = closed_port()
    unreachable = f"amqp://guest:guest@127.0.0.1:{port}/?connect_timeout=1"
    context = relay_app.build(postgres_url, unreachable)
    relay_app.publish_ticks(context, 0, 30, keys=3, per_transaction=10)
    env = environment(postgres_url, unreachable)

    # A short run of the relay against a broker nobody listens to.
    process = await asyncio.create_subprocess_exec(
        TIDINGS, "relay", APP, env=env, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL
    )
    try:
        for _ in range(300):  # bounded: 30 s
            if await asyncio.to_thread(most_attempts, context) > 0:
                break
            await asyncio.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=30)
    assert process.returncode == 0

    status = await asyncio.to_thread(tidings_json, "outbox", "status", APP, env=env)
    assert status["context"] == relay_app.NAME
    assert status["pending"] == 30
    assert status["lag_seconds"] > 0
    assert datetime.fromisoformat(status["oldest_pending_at"]) < datetime.now(UTC)
    stuck = status["stuck"]
    assert len(stuck) == 10, "the status lists the first stuck rows, at most 10"
    assert [row["position"] for row in stuck] == sorted(row["position"] for row in stuck)
    for row in stuck:
        assert row["event_type"] == relay_app.EVENT_TYPE
        assert row["attempts"] >= 1
        assert "TransportError" in row["last_error"]
        assert f"127.0.0.1:{port}" in row["last_error"]

    # Once a broker is reachable the rows go out and the status is clean again.
    broker = f"sqlite:///{tmp_path / 'broker.db'}"
    relay = Relay(context, open_transport(broker), complete_after_commit=False)
    assert await relay.drain() == 30
    await context.adispose()
    status = await asyncio.to_thread(tidings_json, "outbox", "status", APP, env=env)
    assert (status["pending"], status["lag_seconds"], status["stuck"]) == (0, 0.0, [])
    assert status["relay_owner"] == relay.lease.owner


async def test_outbox_replay_resends_archived_events_created_since_a_time_to_a_new_subscriber(
    postgres_url: str, tmp_path: Path
) -> None:
    # RabbitMQ, where a subscription gets only what is published after it exists (a
    # shared log such as the SQLite broker gives a late group everything it keeps).
    tag = uuid7().hex[-12:]
    broker = relay_brokers.broker_url("rabbitmq", tag, tmp_path)
    context = relay_app.build(postgres_url, broker)
    env = environment(postgres_url, broker)
    group = f"latecomer-{tag}"
    started = datetime.now(UTC).replace(microsecond=0)
    await asyncio.to_thread(relay_app.publish_ticks, context, 0, 500, keys=10)
    # --since takes whole seconds: let the clock pass one before the second half.
    since = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    await asyncio.sleep((since - datetime.now(UTC)).total_seconds())
    await asyncio.to_thread(relay_app.publish_ticks, context, 500, 500, keys=10)
    relay = Relay(context, retention="archive", complete_after_commit=False, unrouted_grace=0)
    assert await relay.drain() == 1000
    assert relay.stats.unroutable == 1000  # nobody subscribed yet
    await context.adispose()

    status = await asyncio.to_thread(tidings_json, "outbox", "status", APP, env=env)
    assert (status["pending"], status["archived"], status["unrouted"]) == (0, 1000, 1000)

    async with open_transport(broker) as consumer:
        # A subscriber added after the events were relayed gets them only by a replay.
        await consumer.declare_subscription(group, {relay_app.EVENT_TYPE})
        stamp = since.strftime("%Y-%m-%dT%H:%M:%S")
        replay = await asyncio.to_thread(
            tidings_json, "outbox", "replay", APP, "--since", stamp, env=env
        )
        assert replay == {"context": relay_app.NAME, "replayed": 500}
        recent = await collect(consumer, group, {relay_app.EVENT_TYPE}, 500, timeout=60)
        relay_app.check_arrivals(recent, range(500, 1000))

        stamp = started.strftime("%Y-%m-%dT%H:%M:%S")
        replay = await asyncio.to_thread(
            tidings_json, "outbox", "replay", APP, "--since", stamp, env=env
        )
        assert replay["replayed"] == 1000
        everything = await collect(consumer, group, {relay_app.EVENT_TYPE}, 1000, timeout=60)
        relay_app.check_arrivals(everything, range(1000))
    await relay_brokers.remove("rabbitmq", tag, [group])
