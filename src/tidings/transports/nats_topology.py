"""The NATS transport's topology: the one stream and a durable consumer per group.

See :mod:`tidings.transports.nats` for why one stream with interest retention, and how
a group's consumer filters on its types.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from tidings.errors import ConfigurationError
from tidings.transports.base import TransportError
from tidings.transports.nats_options import NatsOptions, durable_name, event_subject
from tidings.transports.nats_publish import BROKER_ERRORS


class Topology:
    """Declares the stream and the groups' consumers with the URL's settings."""

    def __init__(self, options: NatsOptions, where: str) -> None:
        self._options = options
        self._where = where

    async def ensure_stream(self, js: JetStreamContext) -> None:
        """Create the stream when it is missing; raise :class:`ConfigurationError` when
        the stream found does not capture tidings' subjects."""
        name = self._options.stream
        wanted = f"{self._options.subject_prefix}.>"
        try:
            async with asyncio.timeout(self._options.confirm_timeout):
                try:
                    info = await js.stream_info(name)
                except nats.js.errors.NotFoundError:
                    info = await js.add_stream(
                        StreamConfig(
                            name=name,
                            subjects=[wanted],
                            retention=RetentionPolicy.INTEREST,
                            storage=StorageType.FILE,
                            num_replicas=self._options.replicas,
                            duplicate_window=self._options.duplicate_window,
                        )
                    )
        except nats.js.errors.BadRequestError as exc:
            raise ConfigurationError(
                f"NATS refused to create stream {name!r}: {exc.description}; another "
                f"stream may already capture {wanted!r}: delete it or point ?stream= at it"
            ) from exc
        except BROKER_ERRORS as exc:
            raise TransportError(
                f"cannot create or inspect stream {name!r} on NATS at {self._where}: "
                f"{exc!r}; check that JetStream is enabled, then retry"
            ) from exc
        if wanted not in (info.config.subjects or []):
            raise ConfigurationError(
                f"stream {name!r} on NATS at {self._where} exists but does not capture "
                f"{wanted!r} (subjects: {info.config.subjects}); add that subject to it or "
                "choose another stream with ?stream="
            )

    async def declare_consumer(
        self, js: JetStreamContext, client: NatsClient, group: str, event_types: Collection[str]
    ) -> tuple[str, frozenset[str] | None]:
        """The consumer's name, and the types to filter client-side (None: server filters)."""
        durable = durable_name(group)
        types = frozenset(event_types)
        prefix = self._options.subject_prefix
        subjects = sorted(event_subject(prefix, "*", event_type) for event_type in types)
        if not subjects:
            raise ConfigurationError(f"group {group!r} must subscribe to at least one type")
        filters: dict[str, Any]
        client_filter: frozenset[str] | None = None
        if len(subjects) == 1:
            filters = {"filter_subject": subjects[0]}
        elif _supports_filter_subjects(client):
            filters = {"filter_subjects": subjects}
        else:
            filters = {"filter_subject": f"{prefix}.>"}
            client_filter = types
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=await self._deliver_policy(js, durable),
            ack_wait=self._options.ack_wait,
            max_deliver=self._options.max_deliver,
            max_ack_pending=self._options.max_ack_pending,
            **filters,
        )
        try:
            async with asyncio.timeout(self._options.confirm_timeout):
                await js.add_consumer(self._options.stream, config)
        except nats.js.errors.BadRequestError as exc:
            raise ConfigurationError(
                f"NATS refused consumer {durable!r} on stream {self._options.stream!r}: "
                f"{exc.description}; it probably exists with other settings (event types, "
                "ack_wait, ...) that this server cannot change in place: delete it "
                f"(nats consumer rm {self._options.stream} {durable}) and subscribe again"
            ) from exc
        except BROKER_ERRORS as exc:
            raise TransportError(
                f"cannot declare consumer {durable!r} on NATS at {self._where}: {exc!r}; "
                "retry when the server is reachable"
            ) from exc
        return durable, client_filter

    async def _deliver_policy(self, js: JetStreamContext, durable: str) -> DeliverPolicy:
        """ALL for a new consumer; an existing one keeps its own (the server cannot
        change it in place)."""
        try:
            async with asyncio.timeout(self._options.confirm_timeout):
                info = await js.consumer_info(self._options.stream, durable)
        except nats.js.errors.NotFoundError:
            return DeliverPolicy.ALL
        except BROKER_ERRORS as exc:
            raise TransportError(
                f"cannot look up consumer {durable!r} on NATS at {self._where}: {exc!r}; "
                "retry when the server is reachable"
            ) from exc
        return info.config.deliver_policy or DeliverPolicy.ALL

    async def delete_consumer(self, js: JetStreamContext, group: str) -> None:
        """Delete the group's durable consumer (interest retention then frees its events)."""
        try:
            await js.delete_consumer(self._options.stream, durable_name(group))
        except nats.js.errors.NotFoundError:
            return
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise TransportError(
                f"cannot delete consumer of {group!r} on NATS at {self._where}: {exc!r}"
            ) from exc


def _supports_filter_subjects(client: NatsClient) -> bool:
    version = client.connected_server_version
    return (version.major, version.minor) >= (2, 10)
