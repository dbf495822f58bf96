"""tidings' long-running loops stop when a library call they make loses the stop's
cancellation (Python 3.11's ``asyncio.wait_for``, see :mod:`tests.support.swallowing`):
each loop raises it at its guard, and each stopper cancels again until its task ended."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Literal

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.support import consumer_app
from tests.support.consumer_app import ProductPriceChangedIntegrationEvent
from tests.support.consumer_infra import (
    basket_on_memory_broker,
    declare,
    price_changed,
)
from tests.support.swallowing import STOP_BOUND, SwallowingCall, cancel_once, ends_within_bound
from tidings import BoundedContext
from tidings.application.retry import RetryPolicy
from tidings.consumer import Consumer
from tidings.consumer.database_watch import DatabaseWatch
from tidings.consumer.items import Item
from tidings.consumer.retry_lanes import RetryLanes
from tidings.consumer.shard_leases import CONSUMER_LEASES, ConsumerShards
from tidings.consumer.stats import ConsumerStats
from tidings.outbox.relay import Relay
from tidings.persistence import leases
from tidings.persistence.tables import metadata, outbox
from tidings.transports.base import NOTHING_UNROUTABLE, Delivery, TransportError
from tidings.transports.memory import MemoryTransport
from tidings.worker import ContextWorker

GROUP = "basket"


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    path = tmp_path / "context.db"
    tables = create_engine(f"sqlite:///{path}")
    metadata.create_all(tables)
    tables.dispose()
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    yield engine
    await engine.dispose()


@pytest.mark.parametrize("then_block", [False, True], ids=["returns", "then-blocks"])
async def test_the_shard_lease_loop_stops_when_a_heartbeat_lost_the_cancellation(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, then_block: bool
) -> None:
    # The loop ends only when cancelled: a heartbeat that lost it would heartbeat on for
    # ever, and the consumer's stop wait for it.
    shards = ConsumerShards(
        engine, GROUP, ttl=0.3, stopping=asyncio.Event(), handled=lambda: 0
    )  # heartbeats every 0.1 s
    await shards.batches(MemoryTransport("memory://unused?shards=2"), {"t"}, 10)
    assert shards.leases is not None and shards.leases.lease is not None
    heartbeat = SwallowingCall(then_block=then_block)
    monkeypatch.setattr(shards.leases, "heartbeat", heartbeat)

    await heartbeat.stopped_by(shards.close())

    assert heartbeat.calls == 1, "the lease loop heartbeat on after its cancellation"
    async with engine.connect() as connection:
        _, holders = await connection.run_sync(leases.holders, CONSUMER_LEASES)
    assert not [h for h in holders if h.units], "the stop released every shard"


async def test_the_shard_lease_loop_stops_at_once_when_cancelled_as_a_shard_drains(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its wait for a drained shard: under asyncio.wait_for, a cancellation landing as the
    # shard drains was lost (Python 3.11), and the loop went round once more.
    shards = ConsumerShards(engine, GROUP, ttl=30.0, stopping=asyncio.Event(), handled=lambda: 0)
    await shards.batches(MemoryTransport("memory://unused?shards=2"), {"t"}, 10)
    assert shards.leases is not None
    granted = shards.leases.shards
    released = asyncio.Event()
    rounds = 0

    async def release_drained() -> None:
        nonlocal rounds
        rounds += 1
        granted.drained()  # reported, as the real one does (it then releases them)
        released.set()

    monkeypatch.setattr(shards.leases, "release_drained", release_drained)
    async with asyncio.timeout(STOP_BOUND):
        await released.wait()  # the loop waits for a drained shard now
    granted.revoke({0})
    granted.stopped(0)  # drained: the loop's wait completes in the step the stop cancels it
    async with asyncio.timeout(STOP_BOUND):
        await shards.close()  # cancels in this step

    assert rounds == 1, "the lease loop went round again after its cancellation"


def _item(seq: int, failures: int = 0) -> Item:
    event = price_changed("product-1", seq)
    contract = ProductPriceChangedIntegrationEvent(product_id="product-1", price=Decimal(seq))
    return Item(Delivery(b""), event, contract, failures=failures)


@pytest.mark.parametrize("then_block", [False, True], ids=["returns", "then-blocks"])
async def test_a_retry_lane_stops_when_its_handler_lost_the_cancellation(
    engine: AsyncEngine, then_block: bool
) -> None:
    # A lane works through its key's queue: one that lost its cancellation in a handler
    # would go on to the next event (backing off between attempts), and the consumer's
    # reconnection or stop wait for all of them.
    handle_once = SwallowingCall(then_block=then_block)
    stopping = asyncio.Event()
    retry = RetryPolicy(initial_delay=0.0, max_delay=0.0)

    async def not_expected(*_: object) -> bool:
        raise AssertionError("nothing fails here")

    lanes = RetryLanes(
        context_name="basket",
        group=GROUP,
        retry=retry,
        immediate_retries=0,
        max_attempts=5,
        handle_once=handle_once,
        give_up=not_expected,
        database=DatabaseWatch(engine, GROUP, retry, stopping),
        wait_for_database=not_expected,
        stats=ConsumerStats(),
        stopping=stopping,
    )
    await lanes.handle_alone(_item(1, failures=1))  # its key blocked: a lane retries it
    assert lanes.queue_behind(_item(2))

    await handle_once.stopped_by(lanes.abandon())

    assert handle_once.calls == 1, "the lane handled the next event after its cancellation"
    assert len(lanes) == 0


@pytest.fixture
async def basket(tmp_path: Path) -> AsyncIterator[BoundedContext]:
    async with basket_on_memory_broker(tmp_path, "stopping") as context:
        yield context


async def test_a_consumer_stops_when_an_acknowledgement_lost_the_cancellation(
    basket: BoundedContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Cancelled once (asyncio.gather of a cancelled worker, a TaskGroup), not stopped: a
    # consumer that lost the cancellation in a broker call (redis-py writes each XACK
    # under wait_for) would wait for the next batch, and whoever cancelled it for ever.
    consumer = Consumer(basket, MemoryTransport(basket.broker_url))
    await declare(consumer)
    producer = MemoryTransport(basket.broker_url)
    await producer.connect()
    await producer.publish_batch("catalog", [price_changed("product-1", 1)])
    acknowledge = SwallowingCall()
    monkeypatch.setattr(consumer.transport, "ack_many", acknowledge)
    task = asyncio.create_task(consumer.run())

    await acknowledge.stopped_by(cancel_once(task))
    await producer.publish_batch("catalog", [price_changed("product-2", 2)])

    assert task.cancelled()
    assert (consumer.stats.batches, consumer.stats.handled) == (1, 1)


async def test_a_consumer_cancelled_waiting_for_a_batch_ends_its_read_and_closes_it(
    basket: BoundedContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An async generator cannot be closed while it runs: the consumer closed its
    # subscription with the read still under way, and ended with RuntimeError('aclose():
    # asynchronous generator is already running'), the subscription left open.
    consumer = Consumer(basket, MemoryTransport(basket.broker_url))
    reading = asyncio.Event()
    closed = False

    async def subscribe_batches(*_: object) -> AsyncIterator[list[Delivery]]:
        nonlocal closed
        try:
            reading.set()
            await asyncio.Event().wait()  # nothing arrives
            yield []
        finally:
            closed = True

    monkeypatch.setattr(consumer.transport, "subscribe_batches", subscribe_batches)
    task = asyncio.create_task(consumer.run())
    async with asyncio.timeout(STOP_BOUND):
        await reading.wait()

    await ends_within_bound(cancel_once(task))

    assert task.cancelled()
    assert closed, "the subscription was not closed"


async def test_a_database_wait_stops_when_a_probe_lost_the_cancellation(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The database is away and nobody stops the consumer: a probe that lost the
    # cancellation would have it probe on until the database answers.
    retry = RetryPolicy(initial_delay=0.05, max_delay=0.05)
    watch = DatabaseWatch(engine, GROUP, retry, asyncio.Event())
    probe = SwallowingCall()  # returns None: the database does not answer
    monkeypatch.setattr(watch, "reachable", probe)
    task = asyncio.create_task(watch.wait_for(ConnectionError("the database is away")))

    await probe.stopped_by(cancel_once(task))

    assert task.cancelled()
    assert probe.calls == 1, "the database was probed again after the cancellation"


class _WatchedEvent(asyncio.Event):
    """An event that tells when it is waited for."""

    def __init__(self) -> None:
        super().__init__()
        self.waited = asyncio.Event()

    async def wait(self) -> Literal[True]:
        self.waited.set()
        return await super().wait()


async def test_a_database_wait_stopped_and_cancelled_at_once_probes_no_more(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a worker's stop does: set the stop, then cancel. Under asyncio.wait_for the
    # wait returned (Python 3.11) and the database was probed once more.
    stopping = _WatchedEvent()
    watch = DatabaseWatch(engine, GROUP, RetryPolicy(initial_delay=60.0, max_delay=60.0), stopping)
    probes = 0

    async def reachable() -> bool:
        nonlocal probes
        probes += 1
        return False

    monkeypatch.setattr(watch, "reachable", reachable)
    task = asyncio.create_task(watch.wait_for(ConnectionError("the database is away")))
    async with asyncio.timeout(STOP_BOUND):
        await stopping.waited.wait()  # it waits out the first backoff now
    stopping.set()
    await cancel_once(task)

    assert task.cancelled()
    assert probes == 0


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[BoundedContext]:
    context = consumer_app.build_catalog(f"sqlite:///{tmp_path / 'catalog.db'}", "memory://unused")
    try:
        yield context
    finally:
        context.dispose()


def _relay(context: BoundedContext) -> Relay:
    retry = RetryPolicy(initial_delay=0.05, max_delay=0.05)
    return Relay(
        context, MemoryTransport("memory://unused"), retry=retry, complete_after_commit=False
    )


async def test_a_relay_stops_when_a_publish_lost_the_cancellation(
    catalog: BoundedContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Cancelled once, not stopped: a relay whose publish lost the cancellation (redis-py
    # writes each XADD under wait_for) would relay on, and whoever cancelled it wait.
    with catalog.transaction():
        consumer_app.ChangeProductPrice(catalog).execute("product-1", Decimal(1))
    relay = _relay(catalog)
    publish = SwallowingCall(result=NOTHING_UNROUTABLE)
    monkeypatch.setattr(relay.transport, "publish_batch", publish)
    task = asyncio.create_task(relay.run())

    await publish.stopped_by(cancel_once(task))

    assert task.cancelled()
    pending = select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
    with catalog.engine.connect() as connection:
        assert connection.execute(pending).scalar() == 0, "what was confirmed is marked"


async def test_a_relay_stops_when_a_connection_attempt_lost_the_cancellation(
    catalog: BoundedContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The broker is down: a relay whose connection attempt lost the cancellation would
    # try again and again until the broker is back.
    relay = _relay(catalog)
    connect = SwallowingCall(error=TransportError("the broker is down"))
    monkeypatch.setattr(relay.transport, "connect", connect)
    task = asyncio.create_task(relay.run())

    await connect.stopped_by(cancel_once(task))

    assert task.cancelled()
    assert connect.calls == 1, "the relay tried to connect again after its cancellation"


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "broker-down"])
async def test_a_worker_cancelled_while_declaring_stops_when_the_broker_call_lost_it(
    basket: BoundedContext, monkeypatch: pytest.MonkeyPatch, declared: bool
) -> None:
    # Declared after all, it would start its relay and consumer; with the broker down,
    # it would try to declare again until the broker is back.
    worker = ContextWorker(basket)
    assert worker.consumer is not None
    declare = SwallowingCall(error=None if declared else TransportError("the broker is down"))
    monkeypatch.setattr(worker.consumer, "declare", declare)
    task = asyncio.create_task(worker.run())

    await declare.stopped_by(cancel_once(task))

    assert task.cancelled()
    assert declare.calls == 1


async def test_a_cancelled_worker_stops_a_part_that_lost_the_cancellation(
    basket: BoundedContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker cancelled once (asyncio.run ending, a TaskGroup): its consumer loses that
    # cancellation in a broker call, then waits in that call. asyncio.gather, cancelled,
    # waited for it with that one cancellation; the worker tells it to stop and cancels
    # it again.
    worker = ContextWorker(basket, relay=False)
    assert worker.consumer is not None
    producer = MemoryTransport(basket.broker_url)
    await producer.connect()
    await producer.declare_subscription(basket.name, worker.consumer.subscriptions.event_types)
    await producer.publish_batch("catalog", [price_changed("product-1", 1)])
    acknowledge = SwallowingCall(then_block=True)
    monkeypatch.setattr(worker.consumer.transport, "ack_many", acknowledge)
    task = asyncio.create_task(worker.run())

    await acknowledge.stopped_by(cancel_once(task))

    assert task.cancelled()
    assert worker.consumer.stats.handled == 1


async def test_a_worker_whose_part_fails_stops_the_other_and_raises_its_error(
    basket: BoundedContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = ContextWorker(basket)
    assert worker.relay is not None

    async def fails() -> None:
        raise RuntimeError("the relay failed")

    monkeypatch.setattr(worker.relay, "run", fails)

    with pytest.raises(RuntimeError, match="the relay failed"):
        async with asyncio.timeout(STOP_BOUND):
            await worker.run()  # returns once the consumer, stopped, ended
