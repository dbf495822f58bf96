"""Consuming integration events: inbox, retries, dead letters."""

from tidings.consumer.consumer import Consumer, ConsumerStats, UnknownTypes
from tidings.consumer.dead_letters import DeadLetter, DeadLetterReason, DeadLetterStore

__all__ = [
    "Consumer",
    "ConsumerStats",
    "DeadLetter",
    "DeadLetterReason",
    "DeadLetterStore",
    "UnknownTypes",
]
