"""Offsets of a Kafka subscription: what was handed out per partition, what may be
committed (only up to the first unacknowledged offset), and the rebalance listener
that commits a revoked partition's progress before it moves."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from tidings.transports.base import Delivery, TransportError

logger = logging.getLogger("tidings.transports.kafka")


@dataclass(slots=True)
class PartitionProgress:
    """Offsets handed out on one partition, in order, and which are acknowledged."""

    outstanding: dict[int, bool] = field(default_factory=dict)
    commit_to: int | None = None
    highest_delivered: int = -1
    # After a nack, records at or past this offset still in the local batch are
    # dropped: the seek makes the broker send them again.
    skip_from: int | None = None

    def delivered(self, offset: int) -> bool:
        """Record ``offset`` as handed out; True if it was handed out before."""
        self.outstanding[offset] = False
        again = offset <= self.highest_delivered
        self.highest_delivered = max(self.highest_delivered, offset)
        return again

    def acked(self, offset: int) -> None:
        if offset not in self.outstanding:
            return  # superseded by a nack or a revocation: it will come again
        self.outstanding[offset] = True
        for first, done in list(self.outstanding.items()):
            if not done:
                break
            del self.outstanding[first]
            self.commit_to = first + 1

    def rewind(self, offset: int) -> None:
        for pending in [o for o in self.outstanding if o >= offset]:
            del self.outstanding[pending]
        self.skip_from = offset


class Subscription(ConsumerRebalanceListener):  # type: ignore[misc]
    """State of one running ``subscribe``: its consumer and per-partition progress."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer
        self.progress: dict[TopicPartition, PartitionProgress] = {}

    async def commit(self, partitions: Collection[TopicPartition] | None = None) -> None:
        offsets: dict[TopicPartition, int] = {}
        for tp, progress in self.progress.items():
            if partitions is not None and tp not in partitions:
                continue
            if progress.commit_to is not None:
                offsets[tp] = progress.commit_to
                progress.commit_to = None
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:
            # The group moved on (rebalance): the partition's new owner starts from
            # the last successful commit, so this only causes redeliveries.
            logger.warning("Kafka offset commit failed, events will be redelivered: %s", exc)

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        await self.commit(revoked)
        for tp in revoked:
            self.progress.pop(tp, None)

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        for tp in assigned:
            self.progress.setdefault(tp, PartitionProgress())


@dataclass(frozen=True, slots=True)
class Token:
    subscription: Subscription
    partition: TopicPartition
    offset: int


def token_of(delivery: Delivery) -> Token:
    token = delivery._transport_token
    if not isinstance(token, Token):
        raise TransportError("this delivery did not come from a Kafka subscription")
    return token
