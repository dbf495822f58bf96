"""The Redis Streams transport against a real Redis: the shared conformance checks,
plus what is specific to Redis (an unreachable server, the stream layout)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import aclosing
from typing import Any

import pytest
from redis.asyncio.connection import AbstractConnection

from tests.integration.transports import conformance
from tests.services import require
from tidings.contracts.cloudevents import decode_structured
from tidings.domain.ids import uuid7
from tidings.transports import PublishNotConfirmedError, TransportError, open_transport
from tidings.transports.redis import RedisTransport


@pytest.fixture
async def transport() -> AsyncIterator[RedisTransport]:
    # A stream of the test's own, deleted afterwards, so runs never see each other.
    stream = f"tidings:test:{uuid7().hex}"
    opened = open_transport(f"{require('redis')}?stream={stream}&block_ms=200")
    assert isinstance(opened, RedisTransport)
    async with opened:
        yield opened
        await opened.client.delete(stream)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_every_group_receives_every_event_in_order_per_key(
    transport: RedisTransport,
) -> None:
    await conformance.check_fan_out_and_order(transport)


async def test_a_group_receives_only_the_types_it_subscribed_to(
    transport: RedisTransport,
) -> None:
    await conformance.check_type_filtering(transport)


async def test_signed_events_verify_as_delivered(transport: RedisTransport) -> None:
    await conformance.check_signatures_survive(transport)


async def test_a_delivery_given_back_comes_to_the_next_consumer(
    transport: RedisTransport,
) -> None:
    await conformance.check_unacked_is_redelivered(transport)


async def test_a_deleted_subscription_forgets_what_it_kept(transport: RedisTransport) -> None:
    await conformance.check_deleted_subscription_forgets_its_events(transport)


async def test_an_abandoned_delivery_comes_back_once_the_subscription_closes(
    transport: RedisTransport,
) -> None:
    group, event_type = "abandoned", "test.abandoned"
    await transport.declare_subscription(group, {event_type})
    [event] = conformance.make_events(1, 1, event_type, "src")
    await transport.publish_batch("src", [event])

    async def take_and_forget() -> None:
        async with aclosing(transport.subscribe(group, {event_type})) as deliveries:
            async for _delivery in deliveries:
                return  # neither ack nor nack: closing the subscription gives it back

    await asyncio.wait_for(take_and_forget(), timeout=10)
    again = await conformance.collect(transport, group, {event_type}, 1, timeout=10)
    assert [e.id for e in again] == [event.id]


async def test_events_published_before_any_consumer_ran_wait_for_a_declared_group(
    transport: RedisTransport,
) -> None:
    await transport.declare_subscription("late", {"test.late"})
    events = conformance.make_events(3, 1, "test.late", "src")
    await transport.publish_batch("src", events)
    received = await conformance.collect(transport, "late", {"test.late"}, 3, timeout=10)
    assert [e.id for e in received] == [e.id for e in events]


async def test_entries_carry_type_source_and_key_next_to_the_structured_body(
    transport: RedisTransport,
) -> None:
    [event] = conformance.make_events(1, 1, "test.fields", "catalog")
    await transport.publish_batch("catalog", [event])
    entries = await transport.client.xrange(transport.options.stream)
    assert entries is not None
    [(_, fields)] = entries
    assert fields is not None
    assert fields[b"type"] == b"test.fields"
    assert fields[b"source"] == b"catalog"
    assert fields[b"key"] == b"key-0"
    assert decode_structured(fields[b"body"]).id == event.id


async def test_maxlen_trims_the_stream_approximately() -> None:
    stream = f"tidings:test:{uuid7().hex}"
    async with open_transport(f"{require('redis')}?stream={stream}&maxlen=100") as transport:
        assert isinstance(transport, RedisTransport)
        try:
            events = conformance.make_events(2_000, 10, "test.trim", "src")
            for start in range(0, len(events), 500):
                await transport.publish_batch("src", events[start : start + 500])
            assert 100 <= await transport.client.xlen(stream) < 2_000
        finally:
            await transport.client.delete(stream)


async def test_an_unreachable_server_is_a_transport_error_within_seconds() -> None:
    started = time.monotonic()
    with pytest.raises(TransportError, match="cannot reach Redis"):
        async with asyncio.timeout(15):
            async with open_transport(f"redis://127.0.0.1:{closed_port()}/0") as transport:
                events = conformance.make_events(1, 1, "test.unreachable", "src")
                await transport.publish_batch("src", events)
    assert time.monotonic() - started < 15


async def test_a_server_that_forgot_the_publish_script_is_given_it_again(
    transport: RedisTransport,
) -> None:
    first, second = conformance.make_events(2, 1, "test.flushed", "src")
    await transport.publish_batch("src", [first])
    await transport.client.script_flush()  # what a restarted server has forgotten too
    await transport.publish_batch("src", [second])
    entries = await transport.client.xrange(transport.options.stream)
    assert [decode_structured(fields[b"body"]).id for _, fields in entries] == [
        first.id,
        second.id,
    ]


async def test_a_key_that_is_not_a_stream_fails_the_batch_naming_the_key() -> None:
    key = f"tidings:test:{uuid7().hex}"
    async with open_transport(f"{require('redis')}?stream={key}") as transport:
        assert isinstance(transport, RedisTransport)
        await transport.client.set(key, "not a stream")
        try:
            with pytest.raises(PublishNotConfirmedError, match="is a stream"):
                await transport.publish_batch(
                    "src", conformance.make_events(3, 1, "test.wrong", "src")
                )
        finally:
            await transport.client.delete(key)


async def test_a_group_declared_late_gets_what_the_log_keeps(transport: RedisTransport) -> None:
    await conformance.check_late_group_gets_what_the_log_keeps(transport)


async def test_a_read_loop_ends_when_redis_py_swallowed_its_cancellation(
    transport: RedisTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    # redis-py writes each command under asyncio.wait_for: a cancellation landing as the
    # XREADGROUP's write completes is lost on Python 3.11, and the loop read on for ever
    # (a consumer's stop hung: the secret hygiene test's in-process worker).
    inside = conformance.CancelledInside()
    write = AbstractConnection._send_packed_command

    async def write_then_cancel(connection: AbstractConnection, command: Iterable[bytes]) -> None:
        await write(connection, command)
        if b"XREADGROUP" in b"".join(command):
            inside.cancel()

    read = transport.client.xreadgroup

    async def xreadgroup(*arguments: Any, **options: Any) -> Any:
        reply = await read(*arguments, **options)
        inside.returned()
        return reply

    monkeypatch.setattr(AbstractConnection, "_send_packed_command", write_then_cancel)
    monkeypatch.setattr(transport.client, "xreadgroup", xreadgroup)
    await inside.check_the_read_ends(transport.subscribe("g", {"test.type"}))
