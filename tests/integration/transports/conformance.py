"""What every transport must do, as reusable checks against a real broker.

Each transport's test module opens its transport and calls these functions; they do
not know which broker is behind the interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

from tidings.contracts.cloudevents import CloudEvent, decode_binary, decode_structured
from tidings.domain.ids import uuid7
from tidings.transports.base import Delivery, Transport
from tidings.transports.cancellation import cancel_and_wait


def make_events(count: int, keys: int, event_type: str, source: str) -> list[CloudEvent]:
    """``count`` events spread round-robin over ``keys`` partition keys, seq in data."""
    return [
        CloudEvent(
            id=str(uuid7()),
            source=source,
            type=event_type,
            subject=f"key-{i % keys}",
            time="2026-01-01T00:00:00Z",
            data_json=json.dumps({"seq": i, "key": f"key-{i % keys}"}).encode(),
        )
        for i in range(count)
    ]


def decode(delivery: Delivery) -> CloudEvent:
    """Decode a delivery in whichever CloudEvents mode the transport used."""
    if any(str(k).lower().startswith(("ce-", "ce_", "cloudevents")) for k in delivery.headers):
        prefix = next(
            p
            for p in ("ce-", "ce_", "cloudEvents:", "cloudEvents_")
            if any(str(k).startswith(p) for k in delivery.headers)
        )
        return decode_binary(delivery.headers, delivery.body, prefix=prefix)
    return decode_structured(delivery.body)


async def collect(
    transport: Transport,
    group: str,
    event_types: set[str],
    expected: int,
    *,
    timeout: float = 120.0,
    on_event: Callable[[CloudEvent], None] | None = None,
) -> list[CloudEvent]:
    """Consume until ``expected`` distinct ids arrived (acking each) or ``timeout``."""
    received: list[CloudEvent] = []
    seen: set[str] = set()
    deadline = time.monotonic() + timeout

    async def run() -> None:
        # aclosing: the subscription is closed (and its consumer released) right here,
        # not whenever the garbage collector finalises the generator.
        async with contextlib.aclosing(transport.subscribe(group, event_types)) as deliveries:
            async for delivery in deliveries:
                event = decode(delivery)
                received.append(event)
                seen.add(event.id)
                if on_event is not None:
                    on_event(event)
                await delivery.ack()
                if len(seen) >= expected:
                    return

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(run(), timeout=max(deadline - time.monotonic(), 1.0))
    return received


def assert_complete_and_ordered(sent: list[CloudEvent], received: list[CloudEvent]) -> None:
    """Every sent id arrived, and per key the first arrival of each id keeps send order."""
    sent_ids = {e.id for e in sent}
    got_ids = {e.id for e in received}
    missing = sent_ids - got_ids
    assert not missing, f"{len(missing)} of {len(sent)} events never arrived"
    by_key: dict[str | None, list[int]] = defaultdict(list)
    first: set[str] = set()
    for event in received:
        if event.id in first:
            continue  # a redelivery; order is judged on first arrivals
        first.add(event.id)
        by_key[event.subject].append(json.loads(event.data_json)["seq"])
    for key, seqs in by_key.items():
        assert seqs == sorted(seqs), f"key {key}: events arrived out of order"


async def check_fan_out_and_order(
    transport: Transport, *, count: int = 10_000, keys: int = 100, batch: int = 500
) -> None:
    """Two groups each receive all ``count`` events, in order per key."""
    tag = uuid7().hex[:12]
    event_type = f"conformance.ordered.{tag}"
    groups = [f"conf-a-{tag}", f"conf-b-{tag}"]
    for group in groups:
        await transport.declare_subscription(group, {event_type})
    events = make_events(count, keys, event_type, source=f"src-{tag}")
    for start in range(0, count, batch):
        await transport.publish_batch(f"src-{tag}", events[start : start + batch])
    for group in groups:
        received = await collect(transport, group, {event_type}, count)
        assert_complete_and_ordered(events, received)


async def check_type_filtering(transport: Transport) -> None:
    """A group receives the types it subscribed to and no other."""
    tag = uuid7().hex[:12]
    wanted, other = f"conformance.wanted.{tag}", f"conformance.other.{tag}"
    group = f"conf-f-{tag}"
    await transport.declare_subscription(group, {wanted})
    source = f"src-{tag}"
    mixed = make_events(10, 2, other, source) + make_events(10, 2, wanted, source)
    await transport.publish_batch(source, mixed)
    received = await collect(transport, group, {wanted}, 10, timeout=30)
    assert {e.type for e in received} == {wanted}
    assert len({e.id for e in received}) == 10


async def check_unacked_is_redelivered(transport: Transport) -> None:
    """A delivery nacked with requeue comes back to the next consumer of the group."""
    tag = uuid7().hex[:12]
    event_type = f"conformance.redelivery.{tag}"
    group = f"conf-r-{tag}"
    await transport.declare_subscription(group, {event_type})
    [event] = make_events(1, 1, event_type, f"src-{tag}")
    await transport.publish_batch(f"src-{tag}", [event])

    async def first_without_ack() -> None:
        async with contextlib.aclosing(transport.subscribe(group, {event_type})) as deliveries:
            async for delivery in deliveries:
                await delivery.nack(requeue=True)
                return

    await asyncio.wait_for(first_without_ack(), timeout=30)
    again = await collect(transport, group, {event_type}, 1, timeout=30)
    assert [e.id for e in again][:1] == [event.id]


async def check_deleted_subscription_forgets_its_events(transport: Transport) -> None:
    """Deleting a subscription drops what it kept; declaring it again starts afresh on
    a routing broker, and at the beginning of what a shared log keeps (as any group
    declared late does)."""
    tag = uuid7().hex[:12]
    event_type = f"conformance.deleted.{tag}"
    group = f"conf-d-{tag}"
    source = f"src-{tag}"
    await transport.declare_subscription(group, {event_type})
    old = make_events(5, 1, event_type, source)
    await transport.publish_batch(source, old)
    await transport.delete_subscription(group)
    await transport.delete_subscription(group)  # idempotent
    await transport.declare_subscription(group, {event_type})
    fresh = make_events(3, 1, event_type, source)
    await transport.publish_batch(source, fresh)
    expected = fresh if transport.routes_by_type else old + fresh
    received = await collect(transport, group, {event_type}, len(expected), timeout=30)
    assert {e.id for e in received} == {e.id for e in expected}
    await transport.delete_subscription(group)


async def check_late_group_gets_what_the_log_keeps(transport: Transport) -> None:
    """On a shared log a group declared after events were published still gets them."""
    assert not transport.routes_by_type
    tag = uuid7().hex[:12]
    event_type = f"conformance.late.{tag}"
    source = f"src-{tag}"
    before = make_events(5, 1, event_type, source)
    assert await transport.publish_batch(source, before) == frozenset()
    await transport.declare_subscription(f"conf-late-{tag}", {event_type})
    after = make_events(2, 1, event_type, source)
    await transport.publish_batch(source, after)
    got = await collect(transport, f"conf-late-{tag}", {event_type}, 7, timeout=30)
    assert [e.id for e in got] == [e.id for e in before + after]
    await transport.delete_subscription(f"conf-late-{tag}")


async def check_unroutable_events_are_reported(transport: Transport) -> None:
    """On a routing broker an event no group subscribed to is confirmed, not refused,
    and reported unroutable, so the relay never counts it as delivered."""
    assert transport.routes_by_type
    tag = uuid7().hex[:12]
    taken = make_events(2, 1, f"conformance.taken.{tag}", "catalog")
    nobody = make_events(2, 1, f"nobody.listens.{tag}", "catalog")
    await transport.declare_subscription(f"conf-u-{tag}", {taken[0].type})
    mixed = [taken[0], nobody[0], taken[1], nobody[1]]
    assert await transport.publish_batch("catalog", mixed) == frozenset({1, 3})
    got = await collect(transport, f"conf-u-{tag}", {taken[0].type}, 2, timeout=30)
    assert [e.id for e in got] == [e.id for e in taken]
    await transport.delete_subscription(f"conf-u-{tag}")


async def check_signatures_survive(transport: Transport) -> None:
    """Signed events verify as delivered: the transport carries the signature attributes,
    every other attribute and the data bytes through unchanged (SECURITY.md)."""
    import base64

    from tidings.consumer.decoding import signed_parts
    from tidings.contracts.signing import KeyRing

    ring = KeyRing.parse(f"k1:{base64.b64encode(b'conformance-key-0123456789').decode()}")
    tag = uuid7().hex[:12]
    event_type, group, source = f"conformance.signed.{tag}", f"conf-s-{tag}", f"src-{tag}"
    await transport.declare_subscription(group, {event_type})
    events = [
        ring.sign(
            replace(
                event,
                subject=f"clé-{i % 2} ☕",
                extensions={"tenant": "acme", "priority": 3, "flag": True},
                data_json=json.dumps({"seq": i, "note": "naïve"}, ensure_ascii=False).encode(),
            )
        )
        for i, event in enumerate(make_events(10, 2, event_type, source))
    ]
    await transport.publish_batch(source, events)
    verified: set[str] = set()

    async def run() -> None:
        async with contextlib.aclosing(transport.subscribe(group, {event_type})) as deliveries:
            async for delivery in deliveries:
                attributes, data, _ = signed_parts(delivery.body, delivery.headers)
                ring.verify(attributes, data)
                verified.add(attributes["id"])
                await delivery.ack()
                if len(verified) == len(events):
                    return

    await asyncio.wait_for(run(), timeout=60)
    assert verified == {event.id for event in events}


class CancelledInside:
    """A subscription read in a task that a hook inside the client library cancels
    (:meth:`cancel`) at a moment where Python 3.11's ``asyncio.wait_for`` in the library
    swallows the cancellation: just as the awaitable it wraps completes. The hook's
    library call reports :meth:`returned` (it returned instead of raising)."""

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.cancelled = False
        self.swallowed = False

    def cancel(self) -> None:
        """Cancel the reading task, once."""
        if self.task is not None and not self.cancelled:
            self.cancelled = True
            self.task.cancel()

    def returned(self) -> None:
        """The library call that was under way when :meth:`cancel` was called returned."""
        self.swallowed = self.swallowed or self.cancelled

    async def check_the_read_ends(self, subscription: AsyncIterator[Delivery]) -> None:
        """Read ``subscription`` until the hook cancelled it: the read loop must end,
        cancelled, whether or not the library swallowed the cancellation."""

        async def read() -> None:
            async for _ in subscription:
                pass

        self.task = asyncio.create_task(read())
        try:
            done, _ = await asyncio.wait({self.task}, timeout=10)  # a bound, not a sync
        finally:
            await cancel_and_wait(self.task)
        assert self.cancelled, "the hook never cancelled the read"
        if sys.version_info < (3, 12):  # 3.12's wait_for no longer swallows it
            assert self.swallowed, "the cancellation was not swallowed: nothing reproduced"
        assert done, "the read loop ran on after its cancellation"
        assert self.task.cancelled()
