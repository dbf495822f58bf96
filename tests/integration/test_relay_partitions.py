"""Partitioned relays: fair shares, rebalancing as relays join, die and leave, reads
restricted to the partitions owned, and changing the partition count (refused while
relays hold partitions). On SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.exc import DBAPIError

from tests.conftest import ContextFactory
from tests.support import relay_app
from tests.support.relay_processes import APP, TIDINGS, environment, tidings_json
from tidings.contracts.envelope import PARTITION_SLOTS, partition_slot
from tidings.errors import ConfigurationError, PartitionsInUseError
from tidings.outbox.partitions import (
    DEFAULT_PARTITIONS,
    Ownership,
    PartitionLeases,
    fair_share,
    partition_count,
    rebalance,
    set_partition_count,
)
from tidings.outbox.store import OutboxStore
from tidings.persistence.tables import relay_members, relay_partitions

NAME = "catalog"


def test_a_fair_share_is_the_partition_count_over_live_relays_rounded_up() -> None:
    assert fair_share(16, 1) == 16
    assert fair_share(16, 2) == 8
    assert fair_share(16, 3) == 6
    assert fair_share(16, 17) == 1
    assert fair_share(1, 5) == 1
    assert fair_share(4096, 0) == 4096  # no live member yet: the relay counts itself
    assert partition_slot("order-1") == partition_slot("order-1") < PARTITION_SLOTS


def _owned(engine: Engine, owner: str, *, leave: bool = False) -> frozenset[int]:
    with engine.begin() as connection:
        return rebalance(connection, NAME, owner, 30.0, leave=leave).owned


def test_relays_share_partitions_as_they_join_die_and_leave(
    database_url: str, make_context: ContextFactory
) -> None:
    engine = make_context(database_url, name=NAME).engine
    assert _owned(engine, "a") == frozenset(range(DEFAULT_PARTITIONS)), "one relay owns all"

    # b joins: a holds everything live, so b gets nothing until a gives half back.
    assert _owned(engine, "b") == frozenset()
    a = _owned(engine, "a")
    assert len(a) == 8
    b = _owned(engine, "b")
    assert len(b) == 8 and not a & b

    # c joins: shares of ceil(16 / 3) = 6; a and b each give two back, c takes them.
    _owned(engine, "c")
    a, b = _owned(engine, "a"), _owned(engine, "b")
    c = _owned(engine, "c")
    assert (len(a), len(b), len(c)) == (6, 6, 4)
    assert len(a | b | c) == 16

    # b dies (its leases expire); a and c take its partitions up to their new share.
    past = datetime.now(UTC) - timedelta(seconds=1)
    with engine.begin() as connection:
        connection.execute(
            update(relay_partitions).where(relay_partitions.c.owner == "b").values(expires_at=past)
        )
        connection.execute(
            update(relay_members).where(relay_members.c.owner == "b").values(expires_at=past)
        )
    a, c = _owned(engine, "a"), _owned(engine, "c")
    assert (len(a), len(c)) == (8, 8) and not a & c

    # c leaves gracefully: everything is a's at its next heartbeat.
    assert _owned(engine, "c", leave=True) == frozenset()
    assert _owned(engine, "a") == frozenset(range(16))


def test_the_partition_count_changes_only_while_no_relay_holds_partitions(
    database_url: str, make_context: ContextFactory
) -> None:
    engine = make_context(database_url, name=NAME).engine
    _owned(engine, "a")
    with pytest.raises(PartitionsInUseError, match="stop every relay"), engine.begin() as c:
        set_partition_count(c, NAME, 4)
    _owned(engine, "a", leave=True)
    with engine.begin() as connection:
        assert set_partition_count(connection, NAME, 4) == DEFAULT_PARTITIONS
    assert _owned(engine, "a") == frozenset(range(4))
    with pytest.raises(ConfigurationError), engine.begin() as connection:
        set_partition_count(connection, NAME, PARTITION_SLOTS + 1)


async def test_a_relay_reads_only_the_rows_of_its_partitions_in_position_order(
    database_url: str, make_context: ContextFactory
) -> None:
    context = make_context(database_url, name=relay_app.NAME)
    relay_app.publish_ticks(context, 0, 200, keys=40)
    store = OutboxStore(context.async_engine)
    try:
        everything = await store.fetch_pending(500)
        some = Ownership(partitions=4, owned=frozenset({1, 3}), members=2)
        rows = await store.fetch_pending(500, ownership=some)
        assert rows, "40 keys over 4 partitions: some rows are in partitions 1 and 3"
        assert all(partition_slot(row["partition_key"]) % 4 in {1, 3} for row in rows)
        assert [row["position"] for row in rows] == sorted(row["position"] for row in rows)
        expected = [r["position"] for r in everything if r["partition_slot"] % 4 in {1, 3}]
        assert [row["position"] for row in rows] == expected
        assert await store.fetch_pending(500, ownership=Ownership(4, frozenset(), 2)) == []
        assert (
            len(await store.fetch_pending(500, ownership=Ownership(4, frozenset(range(4)), 1)))
            == 200
        )
    finally:
        await store.close()
        await context.adispose()


async def test_leases_heartbeat_and_release_so_another_relay_takes_over_at_once(
    database_url: str, make_context: ContextFactory
) -> None:
    context = make_context(database_url, name=NAME)
    first = PartitionLeases(context.async_engine, name=NAME, owner="first", ttl=30)
    second = PartitionLeases(context.async_engine, name=NAME, owner="second", ttl=30)
    try:
        assert (await first.heartbeat()).owns_all and not first.renew_due
        assert (await second.heartbeat()).owned == frozenset()
        await first.release()
        assert (await second.heartbeat()).owns_all
    finally:
        await context.adispose()


@pytest.mark.parametrize("ttl", [0.0, -1.0])
async def test_a_relay_lease_must_last(
    ttl: float, database_url: str, make_context: ContextFactory
) -> None:
    # A lease that expires as it is taken would hand the partitions to any other relay at
    # once, and heartbeat every ttl / 3 = 0 s.
    context = make_context(database_url, name=NAME)
    try:
        with pytest.raises(ConfigurationError, match="lease ttl must be positive"):
            PartitionLeases(context.async_engine, name=NAME, owner="a", ttl=ttl)
    finally:
        await context.adispose()


def test_partitions_and_status_commands(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'outbox.db'}"
    env = environment(database, f"sqlite:///{tmp_path / 'broker.db'}")
    assert TIDINGS.exists()
    tidings_plain("db", "init", APP, "--partitions", "8", env=env)
    assert tidings_json("outbox", "partitions", APP, env=env)["partitions"] == 8

    context = relay_app.build(database, env[relay_app.BROKER_ENV], create=False)
    leases = PartitionLeases(context.async_engine, name=relay_app.NAME, owner="h:1:x", ttl=30)
    asyncio.run(leases.heartbeat(published=5, rate=2.5))
    refused = run("outbox", "partitions", APP, "4", env=env)
    assert refused.returncode == 1
    assert "PartitionsInUseError" in refused.stderr and "h:1:x" in refused.stderr

    status = tidings_json("outbox", "status", APP, env=env)
    assert status["partitions"] == 8
    [relay] = status["relays"]
    assert (relay["owner"], relay["partitions"], relay["expired"]) == (
        "h:1:x",
        list(range(8)),
        False,
    )
    assert relay["published_total"] == 5

    async def release() -> None:
        await leases.release()
        await context.adispose()

    asyncio.run(release())
    changed = tidings_json("outbox", "partitions", APP, "4", env=env)
    assert (changed["before"], changed["partitions"]) == (8, 4)


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TIDINGS), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def tidings_plain(*args: str, env: dict[str, str]) -> None:
    done = run(*args, env=env)
    assert done.returncode == 0, done


def test_relays_starting_together_on_a_new_outbox_all_get_the_same_partitions(
    server_database_url: str, make_context: ContextFactory
) -> None:
    engine = make_context(server_database_url, name=NAME).engine
    start = threading.Barrier(4)

    def join(owner: str) -> frozenset[int]:
        start.wait(timeout=30)
        try:
            return _owned(engine, owner)
        except DBAPIError:
            # MariaDB rolls a loser of the race back (deadlock or duplicate key); the
            # relay's heartbeat runs its first rebalance again, as here.
            return _owned(engine, owner)

    with ThreadPoolExecutor(4) as pool:
        owned = list(pool.map(join, ["a", "b", "c", "d"]))
    with engine.connect() as connection:
        assert partition_count(connection, NAME) == DEFAULT_PARTITIONS
    assert sum(len(each) for each in owned) == DEFAULT_PARTITIONS
    assert len(frozenset().union(*owned)) == DEFAULT_PARTITIONS, "no partition owned twice"
