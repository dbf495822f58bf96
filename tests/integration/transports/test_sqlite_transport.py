"""The embedded SQLite-file broker: the shared conformance checks, then what only a
broker shared by several processes through one file has to prove."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.transports import conformance
from tests.integration.transports.conformance import decode, make_events
from tidings.errors import ConfigurationError
from tidings.transports import PublishNotConfirmedError, Transport, open_transport
from tidings.transports.sqlite import SqliteTransport

ROOT = Path(__file__).resolve().parents[3]
# short leases so that takeovers after a kill happen within a second
OPTIONS = "lease=1&poll_interval=0.05"


@pytest.fixture
def broker_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'broker.db'}?{OPTIONS}"


@pytest.fixture
async def transport(broker_url: str) -> AsyncIterator[Transport]:
    async with open_transport(broker_url) as opened:
        yield opened


def peer(*args: object) -> subprocess.Popen[bytes]:
    """Start ``tests/support/sqlite_broker_peer.py`` in a process of its own."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.sqlite_broker_peer", *map(str, args)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    _, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr.decode()


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


async def test_a_group_declared_late_starts_at_the_beginning_of_the_log(
    transport: Transport,
) -> None:
    await conformance.check_late_group_gets_what_the_log_keeps(transport)


async def test_a_nack_rewinds_its_partition_to_the_nacked_event(transport: Transport) -> None:
    await transport.declare_subscription("g", {"t"})
    events = make_events(3, 1, "t", "s")
    await transport.publish_batch("s", events)
    stream = aiter(transport.subscribe("g", {"t"}))
    first, _second = await anext(stream), await anext(stream)
    await first.nack(requeue=True)
    again = [await anext(stream) for _ in range(3)]
    assert [decode(d).id for d in again] == [e.id for e in events]
    assert [d.redelivered for d in again] == [True, True, False]
    await stream.aclose()


async def test_a_consumer_of_many_partitions_reads_each_in_order_past_other_types(
    tmp_path: Path,
) -> None:
    # 100 partitions: more than one read statement takes; batch=3: most reads are full
    url = f"sqlite:///{tmp_path / 'wide.db'}?partitions=100&batch=3&{OPTIONS}"
    async with open_transport(url) as transport:
        assert isinstance(transport, SqliteTransport)
        await transport.declare_subscription("g", {"t"})
        wanted = make_events(600, 150, "t", "s")
        others = make_events(300, 150, "other", "s")
        mixed = [event for pair in zip(wanted, others + others, strict=True) for event in pair]
        await transport.publish_batch("s", mixed)
        got = await conformance.collect(transport, "g", {"t"}, 600, timeout=30)
        assert sorted(e.id for e in got) == sorted(e.id for e in wanted)
        for key in {e.subject for e in wanted}:
            assert [e.id for e in got if e.subject == key] == [
                e.id for e in wanted if e.subject == key
            ]
        assert transport.skipped > 0  # the other type was read past, without its body


async def test_a_publish_that_cannot_get_the_write_lock_is_not_confirmed(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    async with open_transport(f"sqlite:///{path}?busy_timeout=0.05") as transport:
        await transport.declare_subscription("g", {"t"})
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(PublishNotConfirmedError, match="retry the whole batch"):
                await transport.publish_batch("s", make_events(3, 1, "t", "s"))
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert isinstance(transport, SqliteTransport)
        assert all(status.lag == 0 for status in await transport.partition_status("g"))


async def test_the_partition_count_of_a_file_cannot_change(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    async with open_transport(url + "?partitions=4") as transport:
        assert isinstance(transport, SqliteTransport)
        assert transport.partitions == 4
    async with open_transport(url) as transport:
        assert isinstance(transport, SqliteTransport)
        assert transport.partitions == 4  # the file's count wins when the URL says nothing
    with pytest.raises(ConfigurationError, match="created with 4 partitions"):
        async with open_transport(url + "?partitions=8"):
            pass


async def test_retention_deletes_only_what_every_group_has_committed(
    transport: Transport,
) -> None:
    assert isinstance(transport, SqliteTransport)
    for group in ("fast", "slow"):
        await transport.declare_subscription(group, {"t"})
    await transport.publish_batch("s", make_events(10, 3, "t", "s"))

    for group in ("fast", "slow"):
        got = await conformance.collect(transport, group, {"t"}, 10, timeout=10)
        assert len({e.id for e in got}) == 10
        await _settle(transport, group)
        if group == "fast":
            assert await transport.compact() == 0  # "slow" still needs every row
    assert await transport.compact() == 10


async def _settle(transport: SqliteTransport, group: str) -> None:
    """Wait (bounded) until the group's consumers have written their acks and left."""
    deadline = time.monotonic() + 10
    while any(s.owner or s.lag for s in await transport.partition_status(group)):
        assert time.monotonic() < deadline, "acks were never committed"
        await asyncio.sleep(0.01)


async def holdings(transport: SqliteTransport, group: str) -> list[int]:
    """How many partitions each consumer of ``group`` holds, smallest first."""
    owners = Counter(s.owner for s in await transport.partition_status(group) if s.owner)
    return sorted(owners.values())


async def test_two_producer_processes_publish_to_one_file_at_once(
    transport: Transport, broker_url: str
) -> None:
    await transport.declare_subscription("g", {"t"})
    producers = [peer("publish", broker_url, source, "t", 2000, 10, 20) for source in "ab"]
    for process in producers:  # both connected...
        assert process.stdout is not None and process.stdout.readline() == b"ready\n"
    for process in producers:  # ...then both go at once
        assert process.stdin is not None
        process.stdin.write(b"go\n")
        process.stdin.flush()
    for process in producers:
        finish(process)
    path = broker_url.removeprefix("sqlite:///").split("?")[0]
    with contextlib.closing(sqlite3.connect(path)) as db:
        sources = [
            s for (s,) in db.execute("SELECT source FROM tidings_broker_log ORDER BY log_offset")
        ]
    print(f"two producers: {sum(a != b for a, b in itertools.pairwise(sources))} interleavings")
    got = await conformance.collect(transport, "g", {"t"}, 4000, timeout=60)
    assert len({e.id for e in got}) == 4000
    assert Counter(e.source for e in got) == {"a": 2000, "b": 2000}
    conformance.assert_complete_and_ordered(got, got)  # in order per key, each producer's own


async def test_a_consumer_killed_mid_stream_loses_nothing(
    transport: Transport, broker_url: str, tmp_path: Path
) -> None:
    count = 2000
    await transport.declare_subscription("g", {"t"})
    events = make_events(count, 20, "t", "s")
    for start in range(0, count, 250):
        await transport.publish_batch("s", events[start : start + 250])
    out = tmp_path / "deliveries.txt"

    victim = peer("consume", broker_url, "g", "t", count, out, 2)
    deadline = time.monotonic() + 60
    while not out.exists() or out.read_bytes().count(b"\n") < 300:
        assert victim.poll() is None, "the consumer ended before it could be killed"
        assert time.monotonic() < deadline, "the consumer never got going"
        await asyncio.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    finish(peer("consume", broker_url, "g", "t", count, out, 0))

    lines = [line.split() for line in out.read_text().splitlines()]
    ids = [line[0] for line in lines]
    assert set(ids) == {e.id for e in events}
    duplicates = len(ids) - len(set(ids))
    print(f"SIGKILL test: {len(ids)} deliveries, {duplicates} duplicates")
    seen: set[str] = set()
    firsts: dict[str, list[int]] = {}
    for event_id, seq, key, redelivered in lines:
        if event_id in seen:
            assert redelivered == "1", "a second delivery must be marked redelivered"
            continue
        seen.add(event_id)
        firsts.setdefault(key, []).append(int(seq))
    for key, seqs in firsts.items():
        assert seqs == sorted(seqs), f"{key}: first deliveries out of order"


async def test_competing_consumers_of_a_group_split_the_partitions(tmp_path: Path) -> None:
    # a longer lease than elsewhere: a loaded machine must not make a holder lapse here
    url = f"sqlite:///{tmp_path / 'broker.db'}?lease=2&poll_interval=0.05"
    async with open_transport(url) as one, open_transport(url) as two:
        assert isinstance(one, SqliteTransport)
        await one.declare_subscription("g", {"t"})
        arrivals: list[tuple[int, dict[str, Any]]] = []
        all_in = asyncio.Event()

        async def consume(name: int, transport: Transport) -> None:
            async for delivery in transport.subscribe("g", {"t"}):
                arrivals.append((name, json.loads(decode(delivery).data_json)))
                await delivery.ack()
                if len(arrivals) >= 4000:
                    all_in.set()

        tasks = [asyncio.create_task(consume(n, t)) for n, t in ((1, one), (2, two))]
        try:
            deadline = time.monotonic() + 15
            while await holdings(one, "g") != [4, 4]:
                assert time.monotonic() < deadline, "the consumers never shared the partitions"
                await asyncio.sleep(0.05)
            events = make_events(4000, 40, "t", "s")
            for start in range(0, 4000, 500):
                await one.publish_batch("s", events[start : start + 500])
            await asyncio.wait_for(all_in.wait(), 60)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    by_consumer = Counter(name for name, _ in arrivals)
    assert by_consumer[1] > 0 and by_consumer[2] > 0
    holders: dict[str, set[int]] = {}
    for name, data in arrivals:
        holders.setdefault(data["key"], set()).add(name)
    assert all(len(names) == 1 for names in holders.values()), "a key went to both consumers"
    for key in holders:
        seqs = [data["seq"] for _, data in arrivals if data["key"] == key]
        assert seqs == sorted(seqs)
