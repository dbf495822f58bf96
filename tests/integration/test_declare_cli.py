"""``tidings declare``: the consuming topology of contexts and systems, from the shell."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import nats
import pytest
from sqlalchemy import create_engine

from tests.services import require
from tests.support.relay_processes import ROOT, TIDINGS, tidings, tidings_json
from tidings.consumer.shard_leases import CONSUMER_LEASES, rebalance
from tidings.domain.ids import uuid7
from tidings.persistence import leases
from tidings.transports import open_transport
from tidings.transports.redis import RedisTransport
from tidings.transports.sqlite import SqliteTransport

BASKET = "examples.ecommerce.basket:context"


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TIDINGS_DEMO_DIR": str(tmp_path),
        "TIDINGS_DEMO_BROKER": f"sqlite:///{tmp_path / 'broker.db'}",
    }


async def test_declare_a_system_declares_every_consuming_context_and_lists_the_others(
    tmp_path: Path,
) -> None:
    env = _env(tmp_path)
    declared = tidings_json("declare", "examples.ecommerce.system:system", env=env)["declared"]

    by_context = {entry["context"]: entry for entry in declared}
    assert len(by_context) == 7
    consuming = {name for name, entry in by_context.items() if entry["event_types"]}
    assert consuming and consuming != set(by_context)  # some only publish
    for name in consuming:
        assert by_context[name]["group"] == name
        assert by_context[name]["transport"] == "sqlite"
    async with SqliteTransport(env["TIDINGS_DEMO_BROKER"]) as broker:
        groups = {status.group for status in await broker.partition_status()}
    assert groups == consuming
    # Idempotent, and readable without --json.
    again = tidings("declare", "examples.ecommerce.system:system", env=env)
    assert "nothing to declare" in again
    assert all(f"{name}: subscription" in again for name in consuming)


def _failing(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``tidings`` expecting exit code 2 (an error)."""
    done = subprocess.run(
        [str(TIDINGS), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done
    return done


def test_declare_fails_with_exit_code_2_when_the_broker_is_unreachable(tmp_path: Path) -> None:
    broker = "amqp://guest:guest@127.0.0.1:1/?connect_timeout=1"
    done = _failing("declare", BASKET, "--broker", broker, env=_env(tmp_path))
    assert "cannot connect to RabbitMQ" in done.stderr


async def test_delete_removes_the_subscription_and_is_refused_while_a_consumer_is_live(
    tmp_path: Path,
) -> None:
    env = _env(tmp_path)
    tidings("declare", BASKET, env=env)
    # A consumer of the group heartbeating its shard leases in the context's database.
    tidings("db", "upgrade", BASKET, env=env)
    database = create_engine(f"sqlite:///{tmp_path / 'basket.db'}")
    try:
        with database.begin() as connection:
            rebalance(connection, "basket", "web-1:7:live", 30.0, 2)
        refused = _failing("declare", BASKET, "--delete", "--yes", env=env)
        assert "live consumers (web-1:7:live)" in refused.stderr
        async with SqliteTransport(env["TIDINGS_DEMO_BROKER"]) as broker:
            assert {status.group for status in await broker.partition_status()} == {"basket"}

        with database.begin() as connection:  # it stops
            rebalance(connection, "basket", "web-1:7:live", 30.0, 2, leave=True)
        deleted = tidings_json("declare", BASKET, "--delete", "--yes", env=env)["deleted"]
        assert deleted == [{"context": "basket", "group": "basket", "transport": "sqlite"}]
        async with SqliteTransport(env["TIDINGS_DEMO_BROKER"]) as broker:
            assert await broker.partition_status() == []
        with database.connect() as connection:  # its leases went with the subscription
            assert leases.holders(connection, CONSUMER_LEASES) == ({}, [])
    finally:
        database.dispose()
    again = tidings("declare", BASKET, "--delete", "--yes", env=env)  # idempotent
    assert "deleted subscription basket (sqlite)" in again


@pytest.fixture(params=["rabbitmq", "redis", "nats"])
async def sharded_broker(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A broker URL of the test's own exchange or stream(s), deleted afterwards."""
    tag = uuid7().hex[:12]
    if request.param == "rabbitmq":
        yield f"{require('rabbitmq')}?exchange=tidings.test.{tag}"
        connection = await aio_pika.connect(require("rabbitmq"))
        async with connection:
            await (await connection.channel()).exchange_delete(f"tidings.test.{tag}")
    elif request.param == "nats":
        stream = f"TIDINGS_CLI_{tag}"
        yield f"{require('nats')}?stream={stream}&subject_prefix={stream.lower()}"
        client = await nats.connect(require("nats"))
        try:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await client.jetstream().delete_stream(stream)
        finally:
            await client.close()
    else:
        url = f"{require('redis')}?stream=tidings:test:{tag}"
        yield url
        async with open_transport(url) as cleaner:
            assert isinstance(cleaner, RedisTransport)
            keys = [f"tidings:test:{tag}{suffix}" for suffix in ("", ":shards", ":0", ":1", ":2")]
            await cleaner.client.delete(*keys)


async def test_delete_lets_a_sharded_group_be_declared_again_with_another_count(
    tmp_path: Path, sharded_broker: str
) -> None:
    env = _env(tmp_path)
    group = f"recount-{uuid7().hex[:12]}"
    two, three = f"{sharded_broker}&shards=2", f"{sharded_broker}&shards=3"
    tidings("declare", BASKET, "--broker", two, "--group", group, env=env)
    refused = _failing("declare", BASKET, "--broker", three, "--group", group, env=env)
    assert "--delete --yes" in refused.stderr  # the refusal names the way out

    # The URL with the new count deletes the old count's topology whole.
    delete = ("declare", BASKET, "--broker", three, "--group", group, "--delete", "--yes")
    deleted = tidings_json(*delete, env=env)["deleted"]
    scheme = three.split(":")[0]
    assert deleted == [{"context": "basket", "group": group, "transport": scheme}]
    declared = tidings_json("declare", BASKET, "--broker", three, "--group", group, env=env)
    assert declared["declared"][0]["group"] == group
    assert f"deleted subscription {group} ({scheme})" in tidings(*delete, env=env)
    async with open_transport(sharded_broker) as broker:
        if isinstance(broker, RedisTransport):  # the last group took the shard streams
            assert not await broker.client.exists(broker.options.shards_key)
