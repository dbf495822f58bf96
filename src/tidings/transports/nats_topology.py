"""The NATS transport's topology: the one stream and a durable consumer per group.

See :mod:`tidings.transports.nats` for why one stream with interest retention, and how
a group's consumer filters on its types. With ``?shards=N`` > 1 the stream records N in
its description and a group has a consumer per shard, filtering that shard's subjects.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

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
from tidings.transports.nats_options import (
    NatsOptions,
    durable_name,
    event_subject,
    shard_durable,
)
from tidings.transports.nats_publish import BROKER_ERRORS

# How the stream's description records the shard count (NATS 2.9 has no stream metadata).
_SHARDS_RECORD = re.compile(r"\btidings shards=(\d+)\b")
# The consumer that keeps a shard's unacknowledged messages while its consumer is recreated.
_HOLDER_SUFFIX = "-hold"


def stream_shards(description: str | None) -> int:
    """The shard count a stream's description records (1 when it records none)."""
    found = _SHARDS_RECORD.search(description or "")
    return int(found.group(1)) if found else 1


@dataclass(frozen=True, slots=True)
class Subscription:
    """A group's declared consumers (one, or one per shard) and how to read them."""

    #: The durable consumers, by shard (shard 0 only when the stream is not sharded).
    consumers: dict[int, ConsumerConfig]
    #: The types to filter client-side (None: the server filters).
    client_filter: frozenset[str] | None


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
                            description=(
                                f"tidings shards={self._options.shards}"
                                if self._options.shards > 1
                                else None
                            ),
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
        recorded = stream_shards(info.config.description)
        if recorded != self._options.shards:
            raise ConfigurationError(
                f"stream {name!r} on NATS at {self._where} has {recorded} shard(s) and the "
                f"URL asks for {self._options.shards} (?shards=): publishers and consumers "
                f"of one stream must agree, so use ?shards={recorded}; to change the count, "
                "drain the stream and delete it (a sharded one goes with the last group's "
                "subscription: tidings declare APP --delete --yes), or use a new one with "
                "?stream= and ?subject_prefix="
            )

    async def declare_consumer(
        self, js: JetStreamContext, client: NatsClient, group: str, event_types: Collection[str]
    ) -> Subscription:
        """Create or update the group's consumer(s): one, or one per shard."""
        types = frozenset(event_types)
        if not types:
            raise ConfigurationError(f"group {group!r} must subscribe to at least one type")
        prefix = self._options.subject_prefix
        count = self._options.shards
        several = len(types) > 1
        client_filter = types if several and not _supports_filter_subjects(client) else None
        consumers: dict[int, ConsumerConfig] = {}
        for shard in range(count):
            durable = durable_name(group) if count == 1 else shard_durable(group, shard)
            # <prefix>.<source>.<shard>.<type> (nats_options.sharded_subject)
            source = "*" if count == 1 else f"*.{shard}"
            subjects = sorted(event_subject(prefix, source, event_type) for event_type in types)
            filters: dict[str, Any]
            if not several:
                filters = {"filter_subject": subjects[0]}
            elif client_filter is None:
                filters = {"filter_subjects": subjects}
            else:  # one filter per consumer (NATS 2.9): every type, of this shard
                filters = {"filter_subject": f"{prefix}.{source}.>"}
            policy, start = await self._deliver_policy(js, durable)
            config = ConsumerConfig(
                durable_name=durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=policy,
                opt_start_seq=start,
                ack_wait=self._options.ack_wait,
                max_deliver=self._options.max_deliver,
                max_ack_pending=self._options.max_ack_pending,
                **filters,
            )
            await self._add_consumer(js, config)
            if count > 1 and start is not None:
                await self._drop_holder(js, durable)  # left by a take_shard cut short
            consumers[shard] = config
        return Subscription(consumers, client_filter)

    async def take_shard(self, js: JetStreamContext, config: ConsumerConfig) -> None:
        """Make the shard's consumer deliver its unacknowledged messages first.

        JetStream redelivers what a dead owner received but did not acknowledge only
        after ``ack_wait``, while newer messages flow at once: per-key order would
        invert. So a consumer with acknowledgements pending is recreated to start after
        its ack floor, and everything unacknowledged comes again, in stream order
        (what was acknowledged past the floor comes twice: the inbox absorbs it).
        Deleting a consumer of an interest stream discards the messages only it still
        needed, so a holder consumer keeps them while the consumer is recreated.
        """
        durable = config.durable_name
        assert durable is not None
        stream = self._options.stream
        try:
            async with asyncio.timeout(self._options.confirm_timeout):
                info = await js.consumer_info(stream, durable)
                pending = info.num_ack_pending or 0
                if pending == 0:
                    return
                start = max(1, (info.ack_floor.stream_seq if info.ack_floor else 0) + 1)
                again = dataclasses.replace(
                    config, deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start
                )
                holder = dataclasses.replace(again, durable_name=durable + _HOLDER_SUFFIX)
                await self._drop_holder(js, durable)  # one left with another start
                await js.add_consumer(stream, holder)
                await js.delete_consumer(stream, durable)
                await js.add_consumer(stream, again)
                await js.delete_consumer(stream, durable + _HOLDER_SUFFIX)
        except BROKER_ERRORS as exc:
            raise TransportError(
                f"cannot restart consumer {durable!r} on NATS at {self._where} from its "
                f"oldest unacknowledged message: {exc!r}; subscribe again (a holder "
                f"consumer {durable + _HOLDER_SUFFIX!r} may be left: delete it)"
            ) from exc

    async def _add_consumer(self, js: JetStreamContext, config: ConsumerConfig) -> None:
        durable = config.durable_name
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

    async def _deliver_policy(
        self, js: JetStreamContext, durable: str
    ) -> tuple[DeliverPolicy, int | None]:
        """ALL for a new consumer; an existing one keeps its own (the server cannot
        change it in place), with its start sequence if it was recreated (take_shard);
        a missing one whose holder is left takes the holder's."""
        names = [durable]
        if self._options.shards > 1:
            # After a take_shard cut short between deleting and recreating the consumer,
            # its holder kept the messages from where the consumer is to start again.
            names.append(durable + _HOLDER_SUFFIX)
        info = None
        try:
            for name in names:
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    async with asyncio.timeout(self._options.confirm_timeout):
                        info = await js.consumer_info(self._options.stream, name)
                    break
        except BROKER_ERRORS as exc:
            raise TransportError(
                f"cannot look up consumer {durable!r} on NATS at {self._where}: {exc!r}; "
                "retry when the server is reachable"
            ) from exc
        if info is None:
            return DeliverPolicy.ALL, None
        return info.config.deliver_policy or DeliverPolicy.ALL, info.config.opt_start_seq

    async def _drop_holder(self, js: JetStreamContext, durable: str) -> None:
        try:
            async with asyncio.timeout(self._options.confirm_timeout):
                await js.delete_consumer(self._options.stream, durable + _HOLDER_SUFFIX)
        except nats.js.errors.NotFoundError:
            return
        except BROKER_ERRORS as exc:
            raise TransportError(
                f"cannot delete consumer {durable + _HOLDER_SUFFIX!r} on NATS at "
                f"{self._where}: {exc!r}; retry when the server is reachable"
            ) from exc

    async def delete_consumers(self, js: JetStreamContext, group: str) -> bool:
        """Delete the group's durable consumer(s), by the shard count the stream records
        (whatever this URL's ``?shards=``); interest retention then frees its events.
        True when the stream, sharded and left without consumers, was deleted too: it
        held nothing any more, and its next user creates it with its own count. (An
        unsharded stream stays: it may be one an operator made for tidings.)"""
        stream = self._options.stream
        try:
            async with asyncio.timeout(self._options.confirm_timeout):
                try:
                    info = await js.stream_info(stream)
                except nats.js.errors.NotFoundError:
                    return False  # no stream, no consumers
                count = stream_shards(info.config.description)
                names = [durable_name(group)]
                if count > 1:
                    shards = [shard_durable(group, shard) for shard in range(count)]
                    names += shards + [name + _HOLDER_SUFFIX for name in shards]
                for name in names:
                    with contextlib.suppress(nats.js.errors.NotFoundError):
                        await js.delete_consumer(stream, name)
                if count == 1 or (await js.stream_info(stream)).state.consumer_count:
                    return False
                # A consumer declared just now (another group starting) would go with it:
                # the operator deleting a group has stopped the stream's users.
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await js.delete_stream(stream)
                return True
        except BROKER_ERRORS as exc:
            raise TransportError(
                f"cannot delete the consumers of {group!r} on NATS at {self._where}: "
                f"{exc!r}; retry when the server is reachable"
            ) from exc


def _supports_filter_subjects(client: NatsClient) -> bool:
    version = client.connected_server_version
    return (version.major, version.minor) >= (2, 10)
