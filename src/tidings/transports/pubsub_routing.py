"""Which event types the subscriptions of a Pub/Sub topic take, for the Pub/Sub transport.

Pub/Sub stores a message published to a topic for each subscription whose filter admits
it, and drops it silently when none does. tidings writes every filter itself
(:func:`filter_for`: ``attributes."ce-type" = "a" OR attributes."ce-type" = "b"``), so
it reads them back (:func:`admitted_by`) to tell which types a topic's subscriptions
take. :class:`TopicRoutes` remembers the types seen taken and lists the topic's
subscriptions again only when a type is not among them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import Any

from google.api_core import exceptions as google_errors
from google.cloud import pubsub_v1

from tidings.transports.pubsub_stream import TYPE_ATTRIBUTE

# Pub/Sub's limit on a subscription filter expression.
MAX_FILTER_BYTES = 256
_FILTER_TERM = re.compile(r'attributes\."ce-type" = "([^"\\]+)"')


def _expression(types: Collection[str]) -> str:
    return " OR ".join(f'attributes."{TYPE_ATTRIBUTE}" = "{t}"' for t in sorted(types))


def filter_for(types: frozenset[str]) -> str:
    """The Pub/Sub filter admitting ``types``, or "" when it exceeds Pub/Sub's limit."""
    expression = _expression(types)
    return expression if len(expression.encode()) <= MAX_FILTER_BYTES else ""


def admitted_by(expression: str) -> frozenset[str] | None:
    """The types a subscription filter admits; None for no filter (every type).

    A filter that is not in tidings' own format (written by another tool) admits no
    type as far as tidings can tell: events only it would take are reported
    unroutable (held by the relay) rather than counted as delivered on a guess.
    """
    if not expression:
        return None
    terms = _FILTER_TERM.findall(expression)
    if _expression(terms) != expression:
        return frozenset()
    return frozenset(terms)


class TopicRoutes:
    """The event types known to be taken by some subscription of one topic.

    ``list_filters`` lists the topic's subscriptions and returns their filters (a
    blocking call, run by the caller in a thread). A type once seen taken is
    remembered; :meth:`forget` drops what is known (the topic was recreated, or the
    connection reopened), so a subscription deleted meanwhile is noticed.
    """

    def __init__(self) -> None:
        self._taken: set[str] = set()
        self._everything = False

    def forget(self) -> None:
        """Drop what is known: the next unknown type lists the subscriptions again."""
        self._taken.clear()
        self._everything = False

    def unknown(self, types: Collection[str]) -> set[str]:
        """Which of ``types`` are not known to be taken (listing could tell)."""
        if self._everything:
            return set()
        return set(types) - self._taken

    def learn(self, types: Collection[str], filters: Collection[str]) -> set[str]:
        """Record what ``filters`` (every subscription's) take; the ``types`` none takes."""
        wanted = set(types)
        for expression in filters:
            admitted = admitted_by(expression)
            if admitted is None:
                # An unfiltered subscription keeps every type (a group with too many
                # types for one filter, which tidings then filters as it consumes).
                self._everything = True
                return set()
            self._taken |= wanted & admitted
        return wanted - self._taken


def list_filters(
    publisher: pubsub_v1.PublisherClient,
    subscriber: pubsub_v1.SubscriberClient,
    topic: str,
    timeout: float,
) -> list[str]:
    """The filters of every subscription of ``topic`` (blocking; one call per page, then
    one per subscription, bounded by ``timeout`` each)."""
    filters: list[str] = []
    names = publisher.list_topic_subscriptions(topic=topic, retry=None, timeout=timeout)
    get: Callable[..., Any] = subscriber.get_subscription
    for name in names:
        try:
            subscription = get(subscription=name, retry=None, timeout=timeout)
        except google_errors.NotFound:
            continue  # deleted since it was listed
        filters.append(subscription.filter)
    return filters
