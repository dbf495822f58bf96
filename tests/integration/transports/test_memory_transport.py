"""The in-process broker: the shared conformance checks, plus what is specific to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.integration.transports import conformance
from tests.integration.transports.conformance import decode, make_events
from tidings.errors import ConfigurationError
from tidings.transports import Transport, open_transport
from tidings.transports.memory import MemoryTransport


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    url = "memory://conformance"
    async with open_transport(url) as opened:
        yield opened
    MemoryTransport.discard_broker(url)


async def test_every_group_gets_every_event_in_order_per_key(transport: Transport) -> None:
    await conformance.check_fan_out_and_order(transport)


async def test_a_group_gets_only_the_types_it_subscribed_to(transport: Transport) -> None:
    await conformance.check_type_filtering(transport)


async def test_signed_events_verify_as_delivered(transport: Transport) -> None:
    await conformance.check_signatures_survive(transport)


async def test_an_unacknowledged_delivery_comes_back(transport: Transport) -> None:
    await conformance.check_unacked_is_redelivered(transport)


async def test_a_deleted_subscription_forgets_what_it_kept(transport: Transport) -> None:
    await conformance.check_deleted_subscription_forgets_its_events(transport)


async def test_a_sharded_group_deleted_by_any_url_is_declared_again_with_another_count() -> None:
    async with (
        open_transport("memory://recount?shards=2") as two,
        open_transport("memory://recount") as unsharded,
        open_transport("memory://recount?shards=3") as three,
    ):
        await two.declare_subscription("billing", {"t"})
        await two.publish_batch("s", make_events(4, 2, "t", "s"))
        with pytest.raises(ConfigurationError, match="has 2 shards"):
            await three.declare_subscription("billing", {"t"})
        await unsharded.delete_subscription("billing")
        await three.declare_subscription("billing", {"t"})
        assert three.shard_count("billing") == 3
        assert isinstance(three, MemoryTransport) and three.backlog("billing") == 0
    MemoryTransport.discard_broker("memory://recount")


async def test_transports_opened_on_the_same_name_share_one_broker() -> None:
    async with (
        open_transport("memory://shared") as producer,
        open_transport("memory://shared") as consumer,
        open_transport("memory://elsewhere") as stranger,
    ):
        await consumer.declare_subscription("billing", {"t"})
        await stranger.declare_subscription("billing", {"t"})
        await producer.publish_batch("s", make_events(3, 1, "t", "s"))
        got = await conformance.collect(consumer, "billing", {"t"}, 3, timeout=5)
        assert len(got) == 3
        nothing = await conformance.collect(stranger, "billing", {"t"}, 1, timeout=0.05)
        assert nothing == []
    MemoryTransport.discard_broker("memory://shared")
    MemoryTransport.discard_broker("memory://elsewhere")


async def test_a_nacked_delivery_comes_back_before_the_later_ones_of_its_key(
    transport: Transport,
) -> None:
    await transport.declare_subscription("g", {"t"})
    events = make_events(3, 1, "t", "s")
    await transport.publish_batch("s", events)
    stream = aiter(transport.subscribe("g", {"t"}))
    first, second = await anext(stream), await anext(stream)
    await first.nack(requeue=True)  # the second, unacked, is given back with it
    await second.ack()  # too late: it comes again
    again = [await anext(stream) for _ in range(3)]
    assert [decode(d).id for d in again] == [e.id for e in events]
    assert [d.redelivered for d in again] == [True, True, False]
    await stream.aclose()


async def test_competing_consumers_never_hold_the_same_key_at_once(transport: Transport) -> None:
    await transport.declare_subscription("g", {"t"})
    await transport.publish_batch("s", make_events(40, 4, "t", "s"))
    held: dict[str, int] = {}
    seen: list[int] = []

    async def consume(name: int) -> None:
        async for delivery in transport.subscribe("g", {"t"}):
            key = decode(delivery).subject or ""
            assert held.setdefault(key, name) == name, f"{key} held by two consumers"
            seen.append(decode(delivery).data["seq"])
            await asyncio.sleep(0)  # let the other consumer try to take the key
            del held[key]
            await delivery.ack()
            if len(seen) == 40:
                return

    done, pending = await asyncio.wait(
        [asyncio.create_task(consume(n)) for n in (1, 2)], return_when=asyncio.FIRST_COMPLETED
    )
    for task in pending:
        task.cancel()
    await asyncio.gather(*done, *pending, return_exceptions=True)
    for task in done:
        task.result()
    assert sorted(seen) == list(range(40))
    for key in range(4):
        assert [s for s in seen if s % 4 == key] == sorted(s for s in seen if s % 4 == key)


async def test_a_stopped_consumer_gives_back_what_it_had_not_acknowledged(
    transport: Transport,
) -> None:
    await transport.declare_subscription("g", {"t"})
    [event] = make_events(1, 1, "t", "s")
    await transport.publish_batch("s", [event])
    stream = aiter(transport.subscribe("g", {"t"}))
    await anext(stream)
    await stream.aclose()
    again = await conformance.collect(transport, "g", {"t"}, 1, timeout=5)
    assert [e.id for e in again] == [event.id]


async def test_a_consumer_skips_the_group_types_it_did_not_ask_for(transport: Transport) -> None:
    await transport.declare_subscription("g", {"wanted", "other"})
    await transport.publish_batch("s", make_events(3, 1, "other", "s"))
    wanted = make_events(2, 1, "wanted", "s")
    await transport.publish_batch("s", wanted)
    got = await conformance.collect(transport, "g", {"wanted"}, 2, timeout=5)
    assert [e.id for e in got] == [e.id for e in wanted]


async def test_an_event_no_group_subscribed_to_is_reported_unroutable(transport: Transport) -> None:
    await conformance.check_unroutable_events_are_reported(transport)
