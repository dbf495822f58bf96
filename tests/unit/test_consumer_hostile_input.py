"""Bad input never crashes a consumer (DESIGN.md guarantee 6), message by message.

Hypothesis-generated hostile deliveries (random bytes, truncated JSON, broken envelopes,
payloads of the wrong types, oversized messages, unknown versions, binary-mode headers
full of garbage) are handed straight to ``Consumer.process``, without a broker: each one
is dead-lettered with the reason it deserves, and good deliveries around them are handled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import consumer_app
from tests.support.consumer_hostile import MAX_BYTES, every_admission_reason, generate
from tests.support.consumer_infra import (
    dead_letter_reasons,
    effect_counts,
    price_changed,
    structured,
)
from tidings import BoundedContext
from tidings.consumer import Consumer, DeadLetterReason
from tidings.transports.base import Delivery
from tidings.transports.memory import MemoryTransport
from tidings.transports.sqlite import SqliteTransport


@pytest.fixture
async def basket(tmp_path: Path) -> AsyncIterator[BoundedContext]:
    context = consumer_app.build_basket(f"sqlite:///{tmp_path / 'basket.db'}", "memory://unused")
    try:
        yield context
    finally:
        await context.adispose()


def _consumer(context: BoundedContext, **options: Any) -> Consumer:
    return Consumer(
        context, MemoryTransport("memory://unused"), max_message_bytes=MAX_BYTES, **options
    )


async def test_hostile_deliveries_are_dead_lettered_with_their_reason_and_good_ones_handled(
    basket: BoundedContext,
) -> None:
    hostile = generate(every_admission_reason, 600, seed=1)
    good = [price_changed(f"product-{i % 7}", i) for i in range(600)]
    consumer = _consumer(basket)

    for bad, event in zip(hostile, good, strict=True):
        await consumer.process(
            [
                Delivery(bad.body, dict(bad.headers), routed_type=bad.routed_type),
                Delivery(structured(event), routed_type=event.type),
            ]
        )

    expected = Counter(message.reason for message in hostile)
    assert dead_letter_reasons(basket.engine) == expected
    # handler_failed needs a failing handler, bad_signature a key ring (test_signing.py)
    not_here = {"handler_failed", "bad_signature"}
    assert set(expected) == {reason.value for reason in DeadLetterReason} - not_here
    assert consumer.stats.dead_lettered == 600
    assert consumer.stats.handled == 600
    assert effect_counts(basket.engine) == (600, 600)


async def test_a_dead_letter_keeps_the_message_as_received_with_the_error(
    basket: BoundedContext,
) -> None:
    consumer = _consumer(basket)
    headers = {"cloudEvents:specversion": "1.0", "cloudEvents:id": b"\xff\xfe"}

    await consumer.process([Delivery(b'{"price": 1}', headers)])

    [letter] = await consumer.dead_letters.list()
    assert letter.reason == "undecodable"
    assert letter.body == b'{"price": 1}'
    assert letter.headers["cloudEvents:specversion"] == "1.0"
    assert letter.error_type == "DecodeError"
    assert "not UTF-8" in (letter.error_message or "")
    assert letter.attempts == 1


async def test_a_failing_upcaster_dead_letters_the_message_instead_of_crashing(
    basket: BoundedContext,
) -> None:
    basket.subscribe(consumer_app.RecordRename(basket))
    basket.add_upcaster(consumer_app.PRODUCT_RENAMED, 1, consumer_app.rename_v1_to_v2)
    consumer = _consumer(basket)
    no_title = price_changed(
        "product-1", 1, type=consumer_app.PRODUCT_RENAMED, data_json=b'{"product_id": "p"}'
    )

    await consumer.process([Delivery(structured(no_title))])

    [letter] = await consumer.dead_letters.list()
    assert letter.reason == "invalid_payload"
    assert "cannot be upcast" in (letter.error_message or "")
    assert "KeyError" in (letter.error_message or "")


async def test_a_type_the_group_does_not_handle_from_a_routing_broker_is_dead_lettered(
    basket: BoundedContext,
) -> None:
    """The memory broker routes by type, like RabbitMQ and NATS: a type the group does
    not handle reached it by a misrouting, and is kept as ``unknown_type``."""
    consumer = _consumer(basket)
    other = price_changed("product-1", 1, type="billing.invoice.sent")

    await consumer.process([Delivery(structured(other), routed_type=other.type)])

    [letter] = await consumer.dead_letters.list()
    assert letter.reason == "unknown_type"
    assert "billing.invoice.sent" in (letter.error_message or "")
    assert consumer.stats.ignored == 0


async def test_a_type_the_group_does_not_handle_on_a_shared_log_without_metadata_is_passed_over(
    basket: BoundedContext, tmp_path: Path
) -> None:
    """A shared log carries other contexts' types: without routing metadata to skip it
    by, the consumer passes it over (``ignored``), it is not a dead letter."""
    consumer = Consumer(basket, SqliteTransport(f"sqlite:///{tmp_path / 'broker.db'}"))
    other = price_changed("product-1", 1, type="billing.invoice.sent")

    await consumer.process([Delivery(structured(other))])

    assert consumer.stats.ignored == 1
    assert await consumer.dead_letters.count() == 0


async def test_routing_metadata_that_disagrees_with_the_body_is_dead_lettered(
    basket: BoundedContext, tmp_path: Path
) -> None:
    for transport in (
        MemoryTransport("memory://unused"),
        SqliteTransport(f"sqlite:///{tmp_path / 'broker.db'}"),
    ):
        consumer = Consumer(basket, transport)
        event = price_changed("product-1", 1)
        forged = Delivery(structured(event), routed_type="billing.invoice.sent")

        await consumer.process([forged])

        assert consumer.stats.dead_lettered == 1
    letters = await consumer.dead_letters.list()
    assert [letter.reason for letter in letters] == ["routing_mismatch"] * 2
    assert effect_counts(basket.engine) == (0, 0)


async def test_unknown_versions_can_be_ignored_instead_of_dead_lettered(
    basket: BoundedContext,
) -> None:
    consumer = _consumer(basket, unknown_types="ignore")
    future = price_changed("product-1", 1, dataversion=9)

    await consumer.process([Delivery(structured(future))])

    assert consumer.stats.ignored == 1
    assert await consumer.dead_letters.count() == 0


async def test_ids_longer_than_the_columns_are_dead_lettered_not_crashing(
    basket: BoundedContext,
) -> None:
    from tidings.contracts.cloudevents import CloudEvent, encode_structured

    consumer = _consumer(basket)
    body = encode_structured(
        CloudEvent(
            id="x" * 500,
            source="elsewhere",
            type=consumer_app.PRICE_CHANGED,
            data_json=b'{"product_id": "p-1", "price": "1.00"}',
        )
    )
    await consumer.process([Delivery(body)])
    assert consumer.stats.dead_lettered == 1
    assert dead_letter_reasons(basket.engine) == Counter({"undecodable": 1})
