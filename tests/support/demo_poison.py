"""Publishes a poison message into a finished demo's broker and lets notifications
dead-letter it: ``python -m tests.support.demo_poison CORRELATION_ID`` with the demo's
environment; prints the poison event's id once its dead letter is recorded."""

from __future__ import annotations

import asyncio
import sys
import time

from tidings.consumer import Consumer
from tidings.contracts.cloudevents import CloudEvent
from tidings.domain.ids import uuid7
from tidings.transports.registry import open_transport


async def main(correlation_id: str) -> None:
    from examples.ecommerce.notifications import context as notifications
    from examples.ecommerce.ordering.contracts import OrderConfirmedIntegrationEvent

    poison = CloudEvent(
        id=str(uuid7()),
        source="ordering",
        type=OrderConfirmedIntegrationEvent.event_type,
        dataversion=OrderConfirmedIntegrationEvent.event_version,
        correlationid=correlation_id,
        data_json=b'{"order_id": 5}',  # no lines, no total: an invalid payload
    )
    async with open_transport(notifications.broker_url) as transport:
        await transport.publish_batch("ordering", [poison])
    consumer = Consumer(notifications)
    task = asyncio.create_task(consumer.run())
    deadline = time.monotonic() + 60
    while consumer.stats.dead_lettered < 1 and time.monotonic() < deadline and not task.done():
        await asyncio.sleep(0.05)
    await consumer.stop()
    await task
    await notifications.adispose()
    if consumer.stats.dead_lettered != 1:
        raise SystemExit("notifications did not dead-letter the poison message")
    print(poison.id)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
