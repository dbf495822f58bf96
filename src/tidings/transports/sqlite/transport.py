"""The SQLite broker's transport: the asyncio side (see :mod:`tidings.transports.sqlite`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit

from tidings.contracts.cloud_event import CloudEvent
from tidings.contracts.cloudevents import STRUCTURED_CONTENT_TYPE
from tidings.errors import ConfigurationError
from tidings.transports.base import (
    NOTHING_UNROUTABLE,
    Delivery,
    PublishNotConfirmedError,
    Transport,
    TransportError,
    Unroutable,
)
from tidings.transports.sqlite.changes import ChangeCounter
from tidings.transports.sqlite.options import PartitionStatus, SqliteBrokerOptions
from tidings.transports.sqlite.state import ConsumerState, PartitionState, Token
from tidings.transports.sqlite.storage import BrokerFile

logger = logging.getLogger("tidings.transports.sqlite")

_T = TypeVar("_T")
_HEADERS = {"content-type": STRUCTURED_CONTENT_TYPE}
_FAST_POLL = 0.002
# How long after finding work a consumer keeps polling at _FAST_POLL: events that come
# a few milliseconds apart then wait ~1 ms each, not a backed-off interval.
_HOT_PERIOD = 1.0
_BREATHER = 0.01
# The log's newest offset (0 when empty). AUTOINCREMENT: a new row's offset is higher
# than any before it, even after retention deleted the newest rows.
_NEWEST_OFFSET = "SELECT coalesce(max(log_offset), 0) FROM tidings_broker_log"


class SqliteTransport(Transport):
    """A broker embedded in a SQLite file, shared by the processes of one machine."""

    schemes = ("sqlite",)
    routes_by_type = False

    def __init__(self, url: str) -> None:
        super().__init__(url)
        parts = urlsplit(url)
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if parts.netloc or not path or path == ":memory:":
            raise ConfigurationError(
                f"{url!r} does not name a broker file; use sqlite:///relative.db or "
                "sqlite:////absolute/path.db (use memory:// for an in-process broker)"
            )
        self.path = path
        self.options = SqliteBrokerOptions.from_query(parts.query)
        self._file = BrokerFile(path, self.options)
        # Consumers' cheap "anything new?" check, on the loop (see changes.py).
        self._changes: ChangeCounter | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        self._consumers: set[ConsumerState] = set()
        self._local_version = 0
        self._last_compaction = time.monotonic()

    @property
    def partitions(self) -> int:
        """The file's partition count (the URL's, or 8, until connected)."""
        return self._file.partitions

    # --- plumbing ---

    async def _call(self, function: Callable[..., _T], *args: Any) -> _T:
        if self._executor is None or self._closed:
            raise TransportError(
                f"the SQLite broker {self.path} is not connected; use "
                "'async with open_transport(url)' or await connect() first"
            )
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, function, *args)
        except sqlite3.Error as exc:
            raise TransportError(
                f"SQLite broker {self.path}: {exc}; retry, and check the file is on a "
                "local disk and writable"
            ) from exc

    # --- connection ---

    async def connect(self) -> None:
        """Open (creating if needed) the broker file and its tables."""
        if self._executor is not None:
            return
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tidings-sqlite")
        try:
            await self._call(self._file.open)
            self._changes = ChangeCounter(self.path)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def close(self) -> None:
        """Hand back this transport's partitions (committing acks) and close the file."""
        if self._executor is None:
            return
        for consumer in list(self._consumers):
            with contextlib.suppress(TransportError):
                await self._retire(consumer)
        with contextlib.suppress(TransportError):
            await self._call(self._file.close)
        if self._changes is not None:
            self._changes.close()
            self._changes = None
        self._closed = True
        self._executor.shutdown(wait=False)
        self._executor = None

    # --- publishing ---

    async def publish_batch(self, source: str, events: Sequence[CloudEvent]) -> Unroutable:
        """Append ``events`` in one transaction; return once it is committed.

        The log keeps every event for the groups declared later: nothing is unroutable.
        """
        if not events:
            return NOTHING_UNROUTABLE
        try:
            await self._call(self._file.insert, source, list(events))
        except TransportError as exc:
            raise PublishNotConfirmedError(
                f"{exc} (none of the {len(events)} events of this batch was written; "
                "retry the whole batch)"
            ) from exc
        self._local_version += 1
        for consumer in self._consumers:
            consumer.wake.set()
        return NOTHING_UNROUTABLE

    # --- groups ---

    async def declare_subscription(self, group: str, event_types: Collection[str]) -> None:
        """Record ``group`` at the start of the log, if it is not recorded yet: a group
        declared after events were published still reads every row the file keeps."""
        await self._call(self._file.declare, group, sorted(event_types))

    async def delete_subscription(self, group: str) -> None:
        """Forget ``group``: its types, offsets and leases (retention then frees its rows)."""
        await self._call(self._file.forget, group)

    async def partition_status(self, group: str | None = None) -> list[PartitionStatus]:
        """Committed offset, end of log, holder and lease of each (group, partition)."""
        return await self._call(self._file.status, group)

    async def backlog(self, group: str) -> int:
        """Messages of the group's types past its committed offsets: its exact lag
        (where :attr:`PartitionStatus.lag` is an upper bound)."""
        return await self._call(self._file.backlog, group)

    async def compact(self) -> int:
        """Delete the rows every group has committed; returns how many were deleted."""
        self._last_compaction = time.monotonic()
        return await self._call(self._file.compact)

    # --- consuming ---

    async def subscribe(self, group: str, event_types: Collection[str]) -> AsyncIterator[Delivery]:
        """Deliveries for ``group`` from the partitions this consumer holds, in offset order."""
        batches = self.subscribe_batches(group, event_types, 1)
        async with contextlib.aclosing(batches):  # hands the partitions back when closed
            async for batch in batches:
                yield batch[0]

    async def subscribe_batches(
        self, group: str, event_types: Collection[str], max_batch: int
    ) -> AsyncGenerator[list[Delivery], None]:
        """What :meth:`subscribe` delivers, every row already read as one batch (up to
        ``max_batch``): handed over from the partitions' buffers directly."""
        consumer = ConsumerState(group, frozenset(event_types))
        await self.declare_subscription(group, consumer.event_types)
        self._consumers.add(consumer)
        try:
            await self._heartbeat(consumer)
            consumer.heartbeat = asyncio.create_task(
                self._heartbeat_loop(consumer), name=f"tidings-sqlite-heartbeat-{group}"
            )
            idle = _FAST_POLL
            breather = hot_until = time.monotonic()
            while True:
                if consumer.failure is not None:
                    raise consumer.failure
                if consumer.retired:
                    raise TransportError(
                        f"the SQLite broker {self.path} was closed while consuming; "
                        "stop iterating before closing the transport"
                    )
                batch: list[Delivery] = []
                while len(batch) < max_batch:
                    item = consumer.next_delivery()
                    if item is None:
                        break
                    token, body, routed, redelivered = item
                    batch.append(
                        Delivery(
                            body=body,
                            headers=dict(_HEADERS),
                            redelivered=redelivered,
                            routed_type=routed,
                            _transport_token=token,
                            _transport=self,
                        )
                    )
                if batch:
                    yield batch
                    if time.monotonic() - breather > _BREATHER:
                        # a handler that never awaits would otherwise starve the
                        # heartbeat task on this loop until the leases lapse
                        await asyncio.sleep(0)
                        breather = time.monotonic()
                    continue
                consumer.wake.clear()
                breather = time.monotonic()
                version = (self._newest_offset(consumer), self._local_version)
                if (
                    consumer.needs_fetch
                    or version[0] is None  # unknown: the file may have changed
                    or version != consumer.seen_version
                    or consumer.commits()
                ):
                    consumer.needs_fetch = False
                    consumer.seen_version = version
                    await self._fetch(consumer)
                    if consumer.ready or consumer.needs_fetch:
                        idle = _FAST_POLL
                        hot_until = time.monotonic() + _HOT_PERIOD
                        continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(idle):
                        await consumer.wake.wait()
                if time.monotonic() >= hot_until:
                    idle = min(idle * 2, self.options.poll_interval)
        finally:
            try:
                await self._retire(consumer)
            except TransportError as exc:
                # the leases lapse on their own; a failed hand-back only delays takeover
                logger.warning(
                    "consumer %s could not hand back its partitions: %s", consumer.id, exc
                )

    def _newest_offset(self, consumer: ConsumerState) -> int | None:
        """The newest offset in the log, None when unknown; looked up only when the
        file's change counter moved. Most commits to the file are not new rows (this
        and other consumers' offsets and leases): the offset tells them apart, so
        those cost no read. A row committed after this look moves the counter again
        and is seen at the next one."""
        if self._changes is None:
            return None
        counter = self._changes.version()
        if counter is None or counter != consumer.seen_counter:
            consumer.seen_counter = counter
            consumer.seen_newest = self._changes.value(_NEWEST_OFFSET)
        return consumer.seen_newest

    async def _fetch(self, consumer: ConsumerState) -> None:
        requests: dict[int, tuple[int, int]] = {}
        for number, state in consumer.partitions.items():
            room = self.options.max_unacked - len(state.pending)
            if not state.draining and not state.buffer and room > 0:
                requests[number] = (state.scanned, min(self.options.batch, room))
        asked = {
            number: (consumer.partitions[number], consumer.partitions[number].epoch)
            for number in requests
        }
        commits = consumer.commits()
        committed, results, skipped = await self._call(
            self._file.read,
            consumer.group,
            consumer.id,
            sorted(consumer.event_types),
            requests,
            commits,
        )
        self.skipped += skipped
        if committed:
            consumer.applied_commits(commits)
        for number, (scanned, rows, full) in results.items():
            state, epoch = asked[number]
            if consumer.partitions.get(number) is not state or state.epoch != epoch:
                continue  # rewound, drained or lost while reading: these rows are stale
            state.scanned = scanned
            if rows:
                state.buffer.extend(rows)
                if number not in consumer.ready:
                    consumer.ready.append(number)
            if full:
                consumer.needs_fetch = True

    async def _heartbeat_loop(self, consumer: ConsumerState) -> None:
        interval = self.options.lease / 4
        while not consumer.retired:
            if consumer.hurry:
                consumer.hurry = False
                await asyncio.sleep(0)
            else:
                await asyncio.sleep(interval)
            try:
                await self._heartbeat(consumer)
            except TransportError as exc:
                # a busy file: try again next beat; the lease outlasts a few misses
                logger.warning("heartbeat of consumer %s failed: %s", consumer.id, exc)
            except Exception as exc:
                consumer.failure = exc
                consumer.wake.set()
                return
            if (
                self.options.retention
                and time.monotonic() - self._last_compaction >= self.options.retention
            ):
                self._last_compaction = time.monotonic()
                try:
                    deleted = await self._call(self._file.compact)
                    logger.debug("retention deleted %d rows from %s", deleted, self.path)
                except TransportError as exc:
                    logger.warning("retention on %s failed: %s", self.path, exc)

    async def _heartbeat(self, consumer: ConsumerState) -> None:
        release = [
            number
            for number, state in consumer.partitions.items()
            if state.draining and not state.unacked()
        ]
        commits = consumer.commits()
        result = await self._call(
            self._file.beat, consumer.group, consumer.id, commits, release, False
        )
        if consumer.retired:
            return
        if result.committed:
            consumer.applied_commits(commits)
        for number in release:
            consumer.partitions.pop(number, None)
        for number in list(consumer.partitions):
            if number not in result.owned:
                consumer.lose(number)
        for number, (committed, suspect) in result.claimed.items():
            consumer.partitions[number] = PartitionState(
                number, committed=committed, scanned=committed, suspect_upto=suspect
            )
            consumer.needs_fetch = True
        active = [s for s in consumer.partitions.values() if not s.draining]
        excess = len(active) - result.share
        if excess > 0:
            # give away the partitions with the least in flight: they are released soonest
            for state in sorted(active, key=lambda s: len(s.pending))[:excess]:
                state.draining = True
                state.drop_buffer()
                if not state.unacked():
                    consumer.hurry = True
        consumer.wake.set()

    async def _retire(self, consumer: ConsumerState) -> None:
        """Stop ``consumer``: write its acks and hand its partitions back."""
        if consumer.retired:
            return
        consumer.retired = True
        self._consumers.discard(consumer)
        if consumer.heartbeat is not None:
            consumer.heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer.heartbeat
        if self._executor is None or self._closed:
            return
        commits = consumer.commits()
        clean = [n for n, state in consumer.partitions.items() if not state.unacked()]
        for state in consumer.partitions.values():
            for token in state.pending:
                token.live = False
        await self._call(self._file.beat, consumer.group, consumer.id, commits, clean, True)

    # --- acknowledgements (in memory; written by the next read or heartbeat) ---

    async def ack(self, delivery: Delivery) -> None:
        """Mark the delivery handled; the committed offset moves past it when it can."""
        token = delivery._transport_token
        if isinstance(token, Token):
            token.acked = True

    async def nack(self, delivery: Delivery, *, requeue: bool = True) -> None:
        """Rewind the partition to this delivery (``requeue``), or skip it like an ack."""
        token = delivery._transport_token
        if not isinstance(token, Token):
            return
        if not requeue:
            token.acked = True
            return
        for consumer in self._consumers:
            if consumer.partitions.get(token.state.number) is token.state:
                consumer.rewind(token)
                return
