"""The Kafka transport's topology: the one topic, created when missing, and the starting
offsets of a consumer group declared before it ever consumed.

Kafka keeps offsets per group, not per type. A group without committed offsets gets,
when :func:`declare_group` runs, the beginning offset of every partition committed
for it: a group declared after events were published still gets everything the topic
retains, even before its first consumer joins. Kafka takes offsets from outside a group
only while it is empty; a live group is left alone (its consumers read partitions
without offsets from the earliest one, so nothing is missed either way).
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    KafkaError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)

from tidings.transports.base import TransportError
from tidings.transports.kafka_options import KafkaOptions

logger = logging.getLogger("tidings.transports.kafka")

_TOPIC_ALREADY_EXISTS = 36
_GROUP_IS_LIVE = (
    CommitFailedError,
    IllegalGenerationError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)


async def ensure_topic(options: KafkaOptions, security: dict[str, Any]) -> None:
    """Create the URL's topic (``?partitions=``, ``?replication=``) unless it exists.

    ``security`` holds the TLS arguments every aiokafka client of the transport gets.
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=options.bootstrap_servers,
        client_id=f"{options.client_id}-admin",
        request_timeout_ms=options.request_timeout_ms,
        **security,
    )
    try:
        await admin.start()
    except KafkaError as exc:
        await admin.close()
        raise TransportError(
            f"cannot reach Kafka at {options.bootstrap_servers}: {exc!r}; check "
            "that the broker runs and that the URL's host and port are right"
        ) from exc
    try:
        if options.topic in await admin.list_topics():
            return
        response = await admin.create_topics(
            [NewTopic(options.topic, options.partitions, options.replication)]
        )
        for _topic, code, message in _topic_errors(response):
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                raise TransportError(
                    f"Kafka refused to create topic {options.topic!r} "
                    f"(error {code}: {message}); create it yourself or fix ?partitions= "
                    "and ?replication= in the URL"
                )
    except KafkaError as exc:
        raise TransportError(
            f"cannot check or create Kafka topic {options.topic!r}: {exc!r}"
        ) from exc
    finally:
        await admin.close()


async def declare_group(options: KafkaOptions, security: dict[str, Any], group: str) -> None:
    """Commit the beginning offset of every partition that ``group`` has none for
    (creating the topic first if it is missing); see the module docstring."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=options.bootstrap_servers,
        group_id=group,
        client_id=f"{options.client_id}-declare",
        enable_auto_commit=False,
        request_timeout_ms=options.request_timeout_ms,
        **security,
    )
    try:
        await consumer.start()
        try:
            if options.topic not in await consumer.topics():
                await ensure_topic(options, security)
                await consumer.topics()  # refreshes the metadata with the new topic
            partitions = consumer.partitions_for_topic(options.topic) or set()
            tps = [TopicPartition(options.topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            missing = [tp for tp in tps if await consumer.committed(tp) is None]
            if missing:
                starts = await consumer.beginning_offsets(missing)
                try:
                    await consumer.commit({tp: starts[tp] for tp in missing})
                except _GROUP_IS_LIVE as exc:
                    logger.debug("group %r is live, offsets left to it: %r", group, exc)
        finally:
            await consumer.stop()
    except KafkaError as exc:
        raise TransportError(
            f"cannot declare Kafka consumer group {group!r} on topic "
            f"{options.topic!r}: {exc!r}; check the broker is reachable and retry"
        ) from exc


def _topic_errors(response: Any) -> list[tuple[str, int, str | None]]:
    errors: list[tuple[str, int, str | None]] = []
    for item in response.topic_errors:
        topic, code = item[0], item[1]
        message = item[2] if len(item) > 2 else None
        errors.append((topic, code, message))
    return errors
