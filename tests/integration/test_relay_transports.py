"""The relay forwards a PostgreSQL outbox to every transport: nothing missing, key order kept.

Guarantees 1 and 4 of DESIGN.md end to end: 10,000 events committed in transactions of
100 across 100 partition keys reach a consumer group declared beforehand, each key's
events in commit order.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.integration.transports.conformance import collect
from tests.support import relay_app, relay_brokers
from tidings.domain.ids import uuid7
from tidings.outbox import Relay
from tidings.transports import open_transport

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

EVENTS = 10_000
KEYS = 100


@pytest.mark.parametrize("kind", relay_brokers.KINDS)
async def test_ten_thousand_committed_events_all_arrive_in_commit_order_per_key(
    kind: str, postgres_url: str, tmp_path: Path
) -> None:
    tag = uuid7().hex[-12:]
    group = f"relaytest-{tag}"
    url = relay_brokers.broker_url(kind, tag, tmp_path)
    context = relay_app.build(postgres_url, url)
    consumer = open_transport(url)
    try:
        async with consumer:
            await consumer.declare_subscription(group, {relay_app.EVENT_TYPE})
            await asyncio.to_thread(
                relay_app.publish_ticks, context, 0, EVENTS, keys=KEYS, per_transaction=100
            )
            started = time.monotonic()
            consuming = asyncio.create_task(
                collect(consumer, group, {relay_app.EVENT_TYPE}, EVENTS, timeout=240)
            )
            relay = Relay(context, complete_after_commit=False)
            relayed = await relay.drain()
            received = await consuming
            elapsed = time.monotonic() - started
        left_in_outbox = await asyncio.to_thread(context.outbox_count)
    finally:
        await context.adispose()
        await relay_brokers.remove(kind, tag, [group])

    arrivals, duplicates = relay_app.check_arrivals(received, range(EVENTS))
    print(f"{kind}: {arrivals} arrivals ({duplicates} duplicates) in {elapsed:.1f}s")
    assert relayed >= EVENTS
    assert {event.subject for event in received} == {relay_app.key_of(i, KEYS) for i in range(KEYS)}
    assert left_in_outbox == 0
