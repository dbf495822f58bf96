"""Signed events through real brokers (issue 12 acceptance): 10,000 forged or tampered
messages, published raw, mixed with 1,000 events the catalog's relay signed, on the
SQLite-file broker and on RabbitMQ.

The catalog rotates its key half-way (``k1`` then ``k2`` first, ``k1`` kept); the basket
requires signatures and holds both keys. The consumer stays up, every bad message is
dead-lettered with its reason, every good event is applied exactly once, none lost over
the rotation.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tests.integration.transports.conformance import collect
from tests.support import consumer_app
from tests.support.consumer_infra import (
    dead_letter_reasons,
    declare,
    effect_counts,
    new_tag,
    publish_raw_rabbitmq,
    rabbitmq_url,
    remove_rabbitmq,
    running,
    wait_until,
)
from tests.support.forgery import (
    AFTER_ROTATION,
    BEFORE_ROTATION,
    CONSUMER_KEYS,
    K1,
    K2,
    Forged,
    forge,
    reasons,
)
from tidings import BoundedContext
from tidings.consumer import Consumer
from tidings.contracts.signing import KeyRing, SignatureCheck
from tidings.outbox.relay import Relay
from tidings.outbox.replay import replay_archived
from tidings.transports import open_transport

GOOD = 1000
BAD = 10_000
CHUNKS = 10

Publish = Callable[[Sequence[Forged]], Awaitable[None]]


async def _mixed_stream(
    tmp_path: Path, broker_url: str, publish_forged: Publish, forged: list[Forged], name: str
) -> None:
    catalog = consumer_app.build_catalog(f"sqlite:///{tmp_path / 'catalog.db'}", broker_url)
    basket = consumer_app.build_basket(f"sqlite:///{tmp_path / 'basket.db'}", broker_url, name)
    consumer = Consumer(
        basket, signatures=SignatureCheck(CONSUMER_KEYS, "required"), batch_size=500
    )
    change_price = consumer_app.ChangeProductPrice(catalog)
    started = time.monotonic()
    try:
        await declare(consumer)
        async with running(consumer) as tasks:
            per_chunk, bad_per_chunk = GOOD // CHUNKS, BAD // CHUNKS
            for chunk in range(CHUNKS):
                for i in range(chunk * per_chunk, (chunk + 1) * per_chunk):
                    with catalog.transaction():
                        change_price.execute(f"product-{i % 20}", Decimal(i))
                # the rotation, half-way: the relay signs with k2 from here on
                ring = BEFORE_ROTATION if chunk < CHUNKS // 2 else AFTER_ROTATION
                relay = Relay(
                    catalog,
                    open_transport(broker_url),
                    signing=ring,
                    complete_after_commit=False,
                )
                assert await relay.drain() == per_chunk
                await publish_forged(forged[chunk * bad_per_chunk : (chunk + 1) * bad_per_chunk])
            await wait_until(
                lambda: consumer.stats.handled + consumer.stats.dead_lettered >= GOOD + BAD,
                timeout=150,
                what=f"{GOOD + BAD} messages",
            )
            assert not tasks[0].done()

        assert dead_letter_reasons(basket.engine) == reasons(forged)
        assert effect_counts(basket.engine) == (GOOD, GOOD)  # each good event applied once
        assert (consumer.stats.handled, consumer.stats.dead_lettered) == (GOOD, BAD)
        print(f"{GOOD} good + {BAD} bad in {time.monotonic() - started:.1f} s")
    finally:
        await catalog.adispose()
        await basket.adispose()


async def test_forged_and_tampered_messages_among_signed_events_on_the_sqlite_broker(
    tmp_path: Path,
) -> None:
    broker = tmp_path / "broker.db"
    forged = forge(BAD, binary_prefix=None, seed=12)

    async def insert_raw(messages: Sequence[Forged]) -> None:
        """Straight into the broker's log with sqlite3, as any process on the box could."""
        with sqlite3.connect(broker, timeout=30) as db:
            db.executemany(
                "INSERT INTO tidings_broker_log "
                "(partition_no, source, type, partition_key, body, created_at) "
                "VALUES (?, 'catalog', ?, ?, ?, ?)",
                [
                    (i % 8, consumer_app.PRICE_CHANGED, f"forged-{i}", m.body, time.time())
                    for i, m in enumerate(messages)
                ],
            )
        db.close()

    await _mixed_stream(tmp_path, f"sqlite:///{broker}", insert_raw, forged, "basket")


async def test_forged_and_tampered_messages_among_signed_events_on_rabbitmq(
    tmp_path: Path,
) -> None:
    tag = new_tag()
    name = f"basket_{tag}"
    forged = forge(BAD, binary_prefix="cloudEvents:", seed=13)

    async def publish_raw(messages: Sequence[Forged]) -> None:
        """With aio-pika, bypassing tidings' encoder; 10 connections confirm in parallel."""
        await asyncio.gather(
            *(
                publish_raw_rabbitmq(
                    tag,
                    [(message.body, message.headers) for message in messages[start::10]],
                    consumer_app.PRICE_CHANGED,
                )
                for start in range(10)
            )
        )

    try:
        await _mixed_stream(tmp_path, rabbitmq_url(tag), publish_raw, forged, name)
    finally:
        await remove_rabbitmq(tag, [name])


@pytest.mark.parametrize("ring", [None, "unsigned"])
async def test_a_consumer_without_keys_reads_signed_events_and_one_requiring_them_refuses_unsigned(
    tmp_path: Path, ring: str | None
) -> None:
    """Signing is additive: a context that does not verify reads signed events; one that
    requires signatures dead-letters events from a producer that does not sign."""
    broker_url = f"sqlite:///{tmp_path / 'broker.db'}"
    catalog = consumer_app.build_catalog(f"sqlite:///{tmp_path / 'catalog.db'}", broker_url)
    basket: BoundedContext = consumer_app.build_basket(
        f"sqlite:///{tmp_path / 'basket.db'}", broker_url
    )
    signing, check = (
        (AFTER_ROTATION, SignatureCheck(KeyRing(), "off"))
        if ring is None
        else (KeyRing(), SignatureCheck(CONSUMER_KEYS, "required"))
    )
    consumer = Consumer(basket, signatures=check)
    try:
        await declare(consumer)
        with catalog.transaction():
            consumer_app.ChangeProductPrice(catalog).execute("product-1", Decimal(1))
        relay = Relay(catalog, signing=signing, complete_after_commit=False)
        assert await relay.drain() == 1
        async with running(consumer):
            await wait_until(
                lambda: consumer.stats.handled + consumer.stats.dead_lettered == 1, what="one"
            )
        expected = (1, 0) if ring is None else (0, 1)
        assert (consumer.stats.handled, consumer.stats.dead_lettered) == expected
    finally:
        await catalog.adispose()
        await basket.adispose()


async def test_tidings_consume_reads_its_key_ring_from_the_environment(tmp_path: Path) -> None:
    """``tidings consume`` with ``TIDINGS_BASKET_SIGNING_KEYS`` (a file, via ``_FILE``):
    verification is required by default once keys are set, so the signed event is handled
    and the unsigned one dead-lettered."""
    broker_url = f"sqlite:///{tmp_path / 'broker.db'}"
    basket_url = f"sqlite:///{tmp_path / 'basket.db'}"
    catalog = consumer_app.build_catalog(f"sqlite:///{tmp_path / 'catalog.db'}", broker_url)
    basket = consumer_app.build_basket(basket_url, broker_url)
    keys = tmp_path / "basket.keys"
    keys.write_text(f"# newest first\n{K2}\n{K1}\n")
    consumer = Consumer(basket, signatures=SignatureCheck(KeyRing(), "off"))
    await declare(consumer)  # the group exists before anything is published
    await consumer.transport.close()
    try:
        for ring in (BEFORE_ROTATION, KeyRing()):  # one signed, one unsigned
            with catalog.transaction():
                consumer_app.ChangeProductPrice(catalog).execute("product-1", Decimal(1))
            relay = Relay(catalog, signing=ring, complete_after_commit=False)
            assert await relay.drain() == 1
        env = {
            **os.environ,
            consumer_app.DATABASE_ENV: basket_url,
            consumer_app.BROKER_ENV: broker_url,
            "TIDINGS_BASKET_SIGNING_KEYS_FILE": str(keys),
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        }
        env.pop("TIDINGS_SIGNING_KEYS", None)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tidings",
            "consume",
            "tests.support.consumer_app:context",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await wait_until(
                lambda: (
                    effect_counts(basket.engine) == (1, 1)
                    and sum(dead_letter_reasons(basket.engine).values()) == 1
                ),
                timeout=60,
                what="one handled, one dead-lettered",
            )
        finally:
            process.send_signal(signal.SIGTERM)
            _, errors = await asyncio.wait_for(process.communicate(), 30)
        assert dead_letter_reasons(basket.engine) == {"bad_signature": 1}
        assert b"not signed" in errors  # the warning names the reason
        assert K1.split(":")[1].encode() not in errors
    finally:
        await catalog.adispose()
        await basket.adispose()


async def test_outbox_replay_signs_archived_events_with_the_current_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Archived events signed with k1 are re-sent signed with the ring's first key."""
    broker_url = f"sqlite:///{tmp_path / 'broker.db'}"
    catalog = consumer_app.build_catalog(f"sqlite:///{tmp_path / 'catalog.db'}", broker_url)
    since = datetime.now(UTC) - timedelta(minutes=1)
    for i in range(3):
        with catalog.transaction():
            consumer_app.ChangeProductPrice(catalog).execute(f"product-{i}", Decimal(i))
    relay = Relay(catalog, signing=BEFORE_ROTATION, retention="archive")
    assert await relay.drain() == 3
    monkeypatch.setenv("TIDINGS_CATALOG_SIGNING_KEYS", f"{K2},{K1}")
    async with open_transport(broker_url) as transport:
        await transport.declare_subscription("late", {consumer_app.PRICE_CHANGED})
        assert await replay_archived(catalog, open_transport(broker_url), since) == 3
        # A late group reads the log from its start: the k1 originals, then the replays.
        received = await collect(transport, "late", {consumer_app.PRICE_CHANGED}, 6, timeout=30)
    copies = Counter((event.id, event.extensions["sigkeyid"]) for event in received)
    assert sorted(key for _, key in copies) == ["k1"] * 3 + ["k2"] * 3
    assert len({event_id for event_id, _ in copies}) == 3  # each event once per key
    await catalog.adispose()
