"""Removing what a test made the Pub/Sub emulator create: a topic and its subscriptions.

The emulator keeps everything in memory until it stops; tests name their topics after
a random tag and delete them (with every subscription attached) when they end.
"""

from __future__ import annotations

import asyncio
import contextlib

import grpc
from google.cloud import pubsub_v1
from google.pubsub_v1.services.publisher.transports.grpc import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber.transports.grpc import SubscriberGrpcTransport

from tidings.transports.pubsub import PubSubTransport


def _remove_sync(emulator: str, topic_path: str) -> None:
    publisher = pubsub_v1.PublisherClient(
        transport=PublisherGrpcTransport(channel=grpc.insecure_channel(emulator))
    )
    subscriber = pubsub_v1.SubscriberClient(
        transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(emulator))
    )
    try:
        with contextlib.suppress(Exception):
            for path in publisher.list_topic_subscriptions(topic=topic_path, timeout=10):
                with contextlib.suppress(Exception):
                    subscriber.delete_subscription(subscription=path, timeout=10)
        with contextlib.suppress(Exception):
            publisher.delete_topic(topic=topic_path, timeout=10)
    finally:
        subscriber.close()


async def remove_topic(url: str) -> None:
    """Delete the topic of Pub/Sub URL ``url`` and its subscriptions (best effort)."""
    transport = PubSubTransport(url)
    await asyncio.to_thread(_remove_sync, transport._emulator, transport.topic_path)
