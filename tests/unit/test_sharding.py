"""ShardSet: the hand-off between a consumer's shard leases and a sharded transport."""

from __future__ import annotations

import asyncio

import pytest

from tidings.transports.base import Delivery, Transport, ack_all
from tidings.transports.memory import MemoryTransport
from tidings.transports.sharding import ShardSet


def test_granted_shards_are_read_and_revoked_ones_drain_after_their_deliveries() -> None:
    shards = ShardSet(4)
    shards.grant([0, 2])
    assert shards.granted == {0, 2}
    first, second = Delivery(b"1"), Delivery(b"2")
    shards.track(first, 2)
    shards.track(second, 2)
    shards.revoke([2])
    assert shards.granted == {0}
    assert shards.draining == {2}
    assert shards.drained() == frozenset()  # the transport still reads it
    shards.stopped(2)
    assert shards.drained() == frozenset()  # two deliveries outstanding
    first.settled()
    first.settled()  # settling twice counts once
    assert shards.drained() == frozenset()
    second.settled()
    assert shards.drained() == {2}
    assert shards.drained() == frozenset()  # reported once
    assert shards.draining == frozenset()


def test_a_lost_connection_settles_everything_outstanding() -> None:
    shards = ShardSet(2)
    shards.grant([1])
    shards.track(Delivery(b"x"), 1)
    shards.revoke([1])
    shards.stopped(1)
    assert shards.drained() == frozenset()
    shards.forget_outstanding()
    assert shards.drained() == {1}


def test_regranting_a_draining_shard_keeps_it() -> None:
    shards = ShardSet(2)
    shards.grant([0])
    shards.revoke([0])
    shards.grant([0])
    shards.stopped(0)  # not revoked any more: nothing to drain
    assert shards.granted == {0}
    assert shards.drained() == frozenset()


def test_shards_outside_the_count_are_refused() -> None:
    shards = ShardSet(2)
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        shards.grant([2])
    with pytest.raises(ValueError, match="at least one shard"):
        ShardSet(0)


async def test_changes_and_drains_wake_their_waiters() -> None:
    shards = ShardSet(3)
    changed = asyncio.ensure_future(shards.changed())
    await asyncio.sleep(0)
    assert not changed.done()
    shards.grant([1])
    await asyncio.wait_for(changed, 1)
    drained = asyncio.ensure_future(shards.wait_drained())
    delivery = shards.track(Delivery(b"x"), 1)
    shards.revoke([1])
    shards.stopped(1)
    await asyncio.sleep(0)
    assert not drained.done()
    await ack_all(MemoryTransport("memory://"), [delivery])
    await asyncio.wait_for(drained, 1)
    assert shards.drained() == {1}


class _Unsharded(MemoryTransport):
    """A transport that keeps the base class's (unsharded) defaults."""

    shard_count = Transport.shard_count
    subscribe_shards = Transport.subscribe_shards


def test_transports_are_unsharded_by_default() -> None:
    assert MemoryTransport("memory://").shard_count("basket") == 1  # unless ?shards=N
    assert MemoryTransport("memory://?shards=4").shard_count("basket") == 4
    transport: Transport = _Unsharded("memory://")
    assert transport.shard_count("basket") == 1
    with pytest.raises(NotImplementedError):
        transport.subscribe_shards("basket", ["x"], 10, ShardSet(1))


def test_a_shard_revoked_before_the_transport_read_it_is_stopped_by_stop_unread() -> None:
    shards = ShardSet(4)
    shards.grant([0, 1, 2, 3])
    shards.revoke([1, 2, 3])
    shards.stop_unread(reading=[0, 3])  # the transport reads 0 and is handing 3 over
    assert shards.drained() == {1, 2}
    assert shards.draining == {3}
