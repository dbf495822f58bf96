"""Guarantee 5 on bad days: the broker or the database goes away while the relay runs.

The relay backs off, keeps the events in the outbox meanwhile (the context keeps
committing), and delivers every one of them once the service is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.integration.transports.conformance import collect
from tests.services import SERVICES, require
from tests.support import relay_app, relay_brokers
from tests.support.postgres_restart import needs_pg_ctlcluster, restart_postgres
from tests.support.tcp_proxy import TcpProxy
from tidings.application.retry import RetryPolicy
from tidings.contracts.cloudevents import CloudEvent
from tidings.domain.ids import uuid7
from tidings.outbox import Relay
from tidings.transports import open_transport
from tidings.transports.base import Transport, Unroutable

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

OUTAGE_SECONDS = 10.0


def count_published(transport: Transport, threshold: int) -> asyncio.Event:
    """An event set once ``transport`` has had ``threshold`` events confirmed."""
    reached = asyncio.Event()
    publish = transport.publish_batch
    confirmed = 0

    async def counting(source: str, events: Sequence[CloudEvent]) -> Unroutable:
        nonlocal confirmed
        unroutable = await publish(source, events)
        confirmed += len(events)
        if confirmed >= threshold:
            reached.set()
        return unroutable

    transport.publish_batch = counting  # type: ignore[method-assign]
    return reached


@pytest.mark.parametrize("kind", sorted(relay_brokers.CUTTABLE))
async def test_the_relay_backs_off_while_the_broker_is_unreachable_then_delivers_everything(
    postgres_url: str, kind: str
) -> None:
    tag = uuid7().hex[-12:]
    group = f"relaytest-{tag}"
    direct = relay_brokers.broker_url(kind, tag, Path())
    host, port, _ = SERVICES[kind]
    before, during = 4000, 1000
    context = relay_app.build(postgres_url, direct)
    try:
        async with TcpProxy(host, port) as proxy, open_transport(direct) as consumer:
            await consumer.declare_subscription(group, {relay_app.EVENT_TYPE})
            await asyncio.to_thread(relay_app.publish_ticks, context, 0, before)
            through_proxy = open_transport(relay_brokers.through_proxy(kind, direct, proxy.port))
            mid_stream = count_published(through_proxy, 1000)
            relay = Relay(
                context,
                through_proxy,
                batch_size=100,
                retry=RetryPolicy(initial_delay=0.05, max_delay=1.0),
                complete_after_commit=False,
            )
            consuming = asyncio.create_task(
                collect(consumer, group, {relay_app.EVENT_TYPE}, before + during, timeout=240)
            )
            running = asyncio.create_task(relay.run())
            await asyncio.wait_for(mid_stream.wait(), timeout=120)

            await proxy.cut()
            # The context keeps working while the broker is away: events pile up.
            await asyncio.to_thread(relay_app.publish_ticks, context, before, during)
            await asyncio.sleep(OUTAGE_SECONDS)  # the outage itself, as the issue specifies
            failures, last_error = relay.stats.failures, relay.stats.last_error
            waiting = await asyncio.to_thread(context.outbox_count)
            await proxy.restore()

            received = await consuming
            await relay.stop()
            await asyncio.wait_for(running, timeout=30)
            left = await asyncio.to_thread(context.outbox_count)
    finally:
        await context.adispose()
        await relay_brokers.remove(kind, tag, [group])

    print(
        f"{kind} outage: {failures} failures while cut ({last_error}), {waiting} events "
        f"waited in the outbox, {proxy.accepted} connections through the proxy"
    )
    assert failures > 0
    assert last_error is not None
    assert waiting >= during
    arrivals, duplicates = relay_app.check_arrivals(received, range(before + during))
    print(f"{arrivals} arrivals, {duplicates} duplicates")
    assert left == 0


@needs_pg_ctlcluster
async def test_the_relay_reconnects_after_postgresql_restarts_and_loses_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    require("postgres")
    broker = f"sqlite:///{tmp_path / 'broker.db'}"
    context = relay_app.build(postgres_url, broker)
    before, after = 3000, 3000
    reached = asyncio.Event()
    seen: set[str] = set()

    def progress(event: CloudEvent) -> None:
        seen.add(event.id)
        if len(seen) >= 1000:
            reached.set()

    try:
        async with open_transport(broker) as consumer:
            await consumer.declare_subscription("meters", {relay_app.EVENT_TYPE})
            await asyncio.to_thread(relay_app.publish_ticks, context, 0, before)
            relay = Relay(
                context,
                retry=RetryPolicy(initial_delay=0.05, max_delay=1.0),
                max_idle_interval=0.5,
                complete_after_commit=False,
            )
            consuming = asyncio.create_task(
                collect(
                    consumer,
                    "meters",
                    {relay_app.EVENT_TYPE},
                    before + after,
                    timeout=240,
                    on_event=progress,
                )
            )
            running = asyncio.create_task(relay.run())
            await asyncio.wait_for(reached.wait(), timeout=60)
            await asyncio.to_thread(restart_postgres)
            retries = await asyncio.to_thread(relay_app.publish_ticks, context, before, after)
            received = await consuming
            await relay.stop()
            await asyncio.wait_for(running, timeout=30)
            left = await asyncio.to_thread(context.outbox_count)
    finally:
        await context.adispose()

    print(
        f"postgres restart: relay failures seen {relay.stats.last_error!r}, "
        f"producer retried {retries} transactions"
    )
    arrivals, duplicates = relay_app.check_arrivals(received, range(before + after))
    print(f"{arrivals} arrivals, {duplicates} duplicates")
    assert left == 0
