"""Consumer shard leases: the two-phase rebalance (excess shards stay held until
released), shard count changes, and the relay's one-phase form left as it was."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

from tidings.consumer.shard_leases import CONSUMER_LEASES, rebalance
from tidings.errors import ConfigurationError
from tidings.persistence import leases
from tidings.persistence.leases import Lease, fair_share
from tidings.persistence.tables import metadata

GROUP = "basket"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'leases.db'}")
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def _beat(engine: Engine, owner: str, count: int = 4, *, leave: bool = False) -> Lease:
    with engine.begin() as connection:
        return rebalance(connection, GROUP, owner, 30.0, count, leave=leave)


def _release(engine: Engine, owner: str, *shards: int) -> None:
    with engine.begin() as connection:
        leases.release(connection, CONSUMER_LEASES, GROUP, owner, shards)


def _holders(engine: Engine) -> dict[str, tuple[int, ...]]:
    with engine.connect() as connection:
        counts, members = leases.holders(connection, CONSUMER_LEASES)
    assert counts.get(GROUP, 0) in (0, 4, 6)
    return {member.owner: member.units for member in members if member.units}


def test_the_fair_share_is_rounded_up() -> None:
    assert fair_share(4, 1) == 4
    assert fair_share(4, 3) == 2
    assert fair_share(5, 0) == 5


def test_excess_shards_stay_held_and_renewed_until_released_one_by_one(engine: Engine) -> None:
    first = _beat(engine, "a")
    assert (first.owned, first.excess, first.share) == (frozenset(range(4)), frozenset(), 4)

    # b joins: a holds every shard live, so b gets none and is short of its share.
    joined = _beat(engine, "b")
    assert (joined.owned, joined.share, joined.members) == (frozenset(), 2, 2)
    assert joined.behind, "a holds more than its share: b heartbeats often"

    # a's next heartbeat keeps its share and reports the rest as excess, still its own.
    rebalanced = _beat(engine, "a")
    assert rebalanced.owned == {0, 1}
    assert rebalanced.excess == {2, 3}
    assert _holders(engine) == {"a": (0, 1, 2, 3)}
    assert _beat(engine, "b").owned == frozenset(), "excess shards are not free"
    assert _beat(engine, "a").excess == {2, 3}, "renewed, not released, by a heartbeat"

    # Each drained shard is released by itself; b takes it at its next heartbeat.
    _release(engine, "a", 2)
    assert _beat(engine, "b").owned == {2}
    assert _beat(engine, "a").excess == {3}
    _release(engine, "a", 3)
    assert _beat(engine, "b").owned == {2, 3}
    assert (settled := _beat(engine, "a")).owned == {0, 1} and not settled.excess
    assert _holders(engine) == {"a": (0, 1), "b": (2, 3)}
    assert not _beat(engine, "b").behind


def test_a_share_that_cannot_be_met_is_not_waited_for(engine: Engine) -> None:
    """4 shards, 3 consumers: shares of 2, 1 and 1; the last is short but nobody holds
    more than 2, so it is not behind (no fast heartbeats for ever)."""
    _beat(engine, "a")
    _beat(engine, "b")
    _beat(engine, "c")
    _beat(engine, "a")  # keeps 0, 1; 2 and 3 in excess
    _release(engine, "a", 2, 3)
    assert _beat(engine, "b").owned == {2, 3}
    late = _beat(engine, "c")
    assert (late.owned, late.share) == (frozenset(), 2)
    assert not late.behind


def test_a_release_touches_only_shards_the_owner_still_holds(engine: Engine) -> None:
    _beat(engine, "a")
    _beat(engine, "b")
    _beat(engine, "a")
    _release(engine, "a", 2)
    _beat(engine, "b")
    _release(engine, "a", 2)  # late: b holds it now
    assert _holders(engine) == {"a": (0, 1, 3), "b": (2,)}


def test_an_excess_shard_within_the_share_again_is_owned_again(engine: Engine) -> None:
    _beat(engine, "a")
    _beat(engine, "b")
    assert _beat(engine, "a").excess == {2, 3}
    _beat(engine, "b", leave=True)  # b goes before a drained anything
    back = _beat(engine, "a")
    assert (back.owned, back.excess) == (frozenset(range(4)), frozenset())


def test_leaving_releases_every_shard_excess_ones_too(engine: Engine) -> None:
    _beat(engine, "a")
    _beat(engine, "b")
    _beat(engine, "a")
    _beat(engine, "a", leave=True)
    assert _holders(engine) == {}
    assert _beat(engine, "b").owned == frozenset(range(4))


def test_another_shard_count_is_refused_while_live_consumers_hold_shards(
    engine: Engine,
) -> None:
    _beat(engine, "a")
    with pytest.raises(ConfigurationError, match="stop every consumer of the group"):
        _beat(engine, "b", count=6)
    _beat(engine, "a", leave=True)
    recreated = _beat(engine, "b", count=6)
    assert (recreated.count, recreated.owned) == (6, frozenset(range(6)))


def test_forgetting_a_group_is_refused_while_a_consumer_is_live_then_clears_its_rows(
    engine: Engine,
) -> None:
    _beat(engine, "a")
    _beat(engine, "b")  # a hot standby: live, holding nothing
    _beat(engine, "a", leave=True)
    with engine.begin() as connection:
        assert leases.forget(connection, CONSUMER_LEASES, GROUP) == ["b"]
    assert _beat(engine, "b").owned == frozenset(range(4)), "nothing was deleted"
    _beat(engine, "b", leave=True)
    with engine.begin() as connection:
        assert leases.forget(connection, CONSUMER_LEASES, GROUP) == []
        assert leases.holders(connection, CONSUMER_LEASES) == ({}, [])
    assert _beat(engine, "c", count=6).owned == frozenset(range(6))
