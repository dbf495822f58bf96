"""The Pub/Sub transport's topology: the one topic, a subscription per group, and which
event types those subscriptions take.

:class:`Topology` creates the topic when it is missing (checked once per connection, or
again once a call found it gone), creates a group's ordered subscription filtered on its
types or checks the one that exists (ordering enabled, a filter admitting every type the
group needs), deletes it, and tells which types of a batch no subscription admits
(:class:`~tidings.transports.pubsub_routing.TopicRoutes`). Admin calls are blocking
client calls, run in a thread with one bounded attempt each (``?connect_timeout=``).
See :mod:`tidings.transports.pubsub`, "Topology", "Type filtering" and "Unroutable
events".
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection
from typing import Any

from google.api_core import exceptions as google_errors
from google.cloud import pubsub_v1

from tidings.errors import ConfigurationError
from tidings.transports.base import TransportError
from tidings.transports.pubsub_options import PubSubOptions, valid_resource_id
from tidings.transports.pubsub_routing import TopicRoutes, admitted_by, filter_for, list_filters
from tidings.transports.pubsub_stream import BROKER_ERRORS


class Topology:
    """Declares the topic and the groups' subscriptions of one ``pubsub://`` URL.

    ``publisher`` and ``subscriber`` return the transport's clients (created on first use).
    """

    def __init__(
        self,
        project: str,
        options: PubSubOptions,
        where: str,
        publisher: Callable[[], pubsub_v1.PublisherClient],
        subscriber: Callable[[], pubsub_v1.SubscriberClient],
    ) -> None:
        self.topic_path = f"projects/{project}/topics/{options.topic}"
        self._project = project
        self._options = options
        self._where = where
        self._publisher = publisher
        self._subscriber = subscriber
        self._topic_ready = False
        self._routes = TopicRoutes()

    def forget_topic(self) -> None:
        """Check the topic again before it is next used (closed, or found gone)."""
        self._topic_ready = False

    async def ensure_topic(self) -> None:
        """Create the topic unless it was seen since :meth:`forget_topic`."""
        if self._topic_ready:
            return
        # A new connection or a recreated topic: what subscriptions took is unknown.
        self._routes.forget()
        publisher = self._publisher()
        try:
            with contextlib.suppress(google_errors.AlreadyExists):
                await self._admin(publisher.create_topic, name=self.topic_path)
        except BROKER_ERRORS as exc:
            raise TransportError(
                f"cannot create or find topic {self.topic_path!r} on Pub/Sub "
                f"({self._where}): {exc!r}; check the project and credentials (or that "
                "the emulator runs); the relay retries with backoff and nothing is lost"
            ) from exc
        self._topic_ready = True

    async def untaken(self, types: set[str]) -> set[str]:
        """Which of ``types`` no subscription of the topic admits.

        Types seen taken are remembered; any other lists the topic's subscriptions and
        reads their filters again (a subscription may have been declared meanwhile).
        """
        if not self._routes.unknown(types):
            return set()
        try:
            filters = await asyncio.to_thread(
                list_filters,
                self._publisher(),
                self._subscriber(),
                self.topic_path,
                self._options.connect_timeout,
            )
        except BROKER_ERRORS as exc:
            if isinstance(exc, google_errors.NotFound):
                self.forget_topic()  # deleted, or the emulator restarted
            raise TransportError(
                f"cannot list the subscriptions of topic {self.topic_path!r} on Pub/Sub "
                f"({self._where}): {exc!r}; nothing of the batch was sent: retry it"
            ) from exc
        return self._routes.learn(types, filters)

    async def declare(self, group: str, event_types: Collection[str]) -> tuple[str, frozenset[str]]:
        """Create the group's subscription if missing (and the topic); its path, and the
        types its filter admits."""
        types = frozenset(event_types)
        if not types:
            raise ConfigurationError(f"group {group!r} must subscribe to at least one type")
        for event_type in types:
            if '"' in event_type or "\\" in event_type:
                raise ConfigurationError(
                    f"event type {event_type!r} cannot appear in a Pub/Sub filter: "
                    'use types without " or \\'
                )
        path = self.subscription_path(group)
        expression = filter_for(types)
        await self.ensure_topic()
        subscriber = self._subscriber()
        request = {
            "name": path,
            "topic": self.topic_path,
            "enable_message_ordering": True,
            "ack_deadline_seconds": self._options.ack_deadline,
            "filter": expression,
            "expiration_policy": {},  # never expires while nobody consumes
        }
        try:
            try:
                await self._admin(subscriber.create_subscription, request=request)
                return path, types
            except google_errors.AlreadyExists:
                existing = await self._admin(subscriber.get_subscription, subscription=path)
        except BROKER_ERRORS as exc:
            raise TransportError(
                f"cannot declare subscription {path!r} on Pub/Sub ({self._where}): {exc!r}; "
                "retry when it is reachable"
            ) from exc
        if not existing.enable_message_ordering:
            raise ConfigurationError(
                f"subscription {path!r} exists without message ordering, so per-key order "
                "would not hold: delete it (it cannot be changed) and subscribe again"
            )
        if not existing.filter:
            return path, types
        admitted = admitted_by(existing.filter) or frozenset()
        missing = types - admitted
        if missing:
            raise ConfigurationError(
                f"subscription {path!r} exists with filter {existing.filter!r}, which "
                f"excludes {sorted(missing)}; Pub/Sub cannot change a filter: delete the "
                "subscription (its backlog goes with it: tidings declare APP --delete --yes) "
                "and declare it again"
            )
        return path, admitted

    async def delete(self, group: str) -> None:
        """Delete the group's subscription and its backlog; idempotent."""
        path = self.subscription_path(group)
        subscriber = self._subscriber()
        try:
            await self._admin(subscriber.delete_subscription, subscription=path)
        except google_errors.NotFound:
            return
        except BROKER_ERRORS as exc:
            raise TransportError(
                f"cannot delete subscription {path!r} on Pub/Sub ({self._where}): {exc!r}"
            ) from exc

    def subscription_path(self, group: str) -> str:
        """The path of ``group``'s subscription (``<topic>.<group>``), else a
        :class:`ConfigurationError` when that is no valid subscription id."""
        name = f"{self._options.topic}.{group}"
        if not valid_resource_id(name):
            raise ConfigurationError(
                f"group {group!r} cannot name a Pub/Sub subscription ({name!r}): use "
                "letters, digits, '-', '_', '.', '~', '+' or '%' (at most 255 in all)"
            )
        return f"projects/{self._project}/subscriptions/{name}"

    async def _admin(self, call: Callable[..., Any], **kwargs: Any) -> Any:
        """A blocking admin call in a thread, bounded by ``?connect_timeout=``."""
        timeout = self._options.connect_timeout
        return await asyncio.to_thread(call, retry=None, timeout=timeout, **kwargs)
