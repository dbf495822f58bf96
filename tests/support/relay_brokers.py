"""Broker URLs of the test's own for the relay acceptance tests, and their cleanup.

Every test gets its own exchange, stream or topic (named after a random tag), so runs
never see each other's events, and removes it afterwards so brokers do not fill up.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from pathlib import Path

from tests.services import SERVICES, require
from tidings.transports.rabbitmq import QUEUE_PREFIX

KINDS = ("memory", "sqlite", "rabbitmq", "nats", "redis", "kafka", "pubsub")


def broker_url(kind: str, tag: str, directory: Path) -> str:
    """A URL of transport ``kind`` isolated by ``tag`` (files go to ``directory``)."""
    if kind == "memory":
        return f"memory://relay-{tag}"
    if kind == "sqlite":
        return f"sqlite:///{directory / f'broker-{tag}.db'}"
    if kind == "rabbitmq":
        return f"{require('rabbitmq')}?exchange=relaytest.{tag}"
    if kind == "nats":
        return f"{require('nats')}?stream=RELAYTEST_{tag}&subject_prefix=relaytest{tag}"
    if kind == "redis":
        return f"{require('redis')}?stream=relaytest:{tag}"
    if kind == "kafka":
        return f"{require('kafka')}?topic=relaytest.{tag}&partitions=4"
    if kind == "pubsub":
        return f"{require('pubsub')}&topic=relaytest.{tag}"
    raise ValueError(f"unknown transport kind {kind!r}")


# The kinds a test can cut off through a TcpProxy, with the URL options that make a
# cut connection noticed within seconds. Kafka is not among them: its clients
# reconnect to the addresses the broker advertises, which a proxy in front of the
# bootstrap address does not cover.
CUTTABLE = {
    "rabbitmq": "&connect_timeout=1&confirm_timeout=5",
    "nats": "&connect_timeout=1&confirm_timeout=5",
    "redis": "&block_ms=200",
    # A restarted emulator forgets its topics: Pub/Sub outages are cut through the proxy.
    "pubsub": "&connect_timeout=2&confirm_timeout=3",
}


def through_proxy(kind: str, url: str, proxy_port: int) -> str:
    """``url`` (of :func:`broker_url`) reaching the broker through a proxy on ``proxy_port``."""
    _host, port, _url = SERVICES[kind]
    return url.replace(f":{port}", f":{proxy_port}", 1) + CUTTABLE[kind]


async def remove(kind: str, tag: str, groups: Collection[str]) -> None:
    """Delete what :func:`broker_url` made the broker create (best effort)."""
    with contextlib.suppress(Exception):
        if kind == "rabbitmq":
            import aio_pika

            connection = await aio_pika.connect(require("rabbitmq"), timeout=5)
            async with connection:
                channel = await connection.channel()
                for group in groups:
                    await channel.queue_delete(f"{QUEUE_PREFIX}{group}")
                await channel.exchange_delete(f"relaytest.{tag}")
        elif kind == "nats":
            import nats

            client = await nats.connect(require("nats"), connect_timeout=5)
            try:
                await client.jetstream().delete_stream(f"RELAYTEST_{tag}")
            finally:
                await client.close()
        elif kind == "redis":
            from redis.asyncio import Redis

            client = Redis.from_url(require("redis"))
            try:
                await client.delete(f"relaytest:{tag}")
            finally:
                await client.aclose()
        elif kind == "pubsub":
            from tests.support.pubsub_admin import remove_topic

            await remove_topic(broker_url(kind, tag, Path()))
        elif kind == "kafka":
            from aiokafka.admin import AIOKafkaAdminClient

            admin = AIOKafkaAdminClient(bootstrap_servers=require("kafka").split("//", 1)[1])
            await admin.start()
            try:
                await admin.delete_topics([f"relaytest.{tag}"])
            finally:
                await admin.close()
