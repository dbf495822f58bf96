"""An embedded broker in a SQLite file (``sqlite:///path/to/broker.db``).

The zero-install default: several processes on one machine publish to and consume
from the same file, with no server to run. The file is in WAL mode, so readers never
block the single writer and a write never waits for readers.

Tables (all prefixed ``tidings_broker_``, created on connect)
    ``log``: the durable log, one row per event: ``log_offset`` (AUTOINCREMENT, so
    offsets only grow, even across deletions), ``partition_no``, ``source``, ``type``,
    ``partition_key``, ``body`` (the structured-mode CloudEvent) and ``created_at``.
    ``partitions``: per consuming group and partition, the committed offset and the
    lease (``owner``, ``lease_until``). ``consumers``: live consumers per group, for
    sharing partitions fairly. ``groups``: the event types each group declared.
    ``settings``: the partition count the file was created with.

Publishing
    :meth:`SqliteTransport.publish_batch` inserts the whole batch in one
    ``BEGIN IMMEDIATE`` transaction and returns after ``COMMIT``: that commit is the
    broker's confirmation. Two producer processes are serialised by SQLite's write
    lock (each waits up to ``busy_timeout``); a batch that cannot get the lock raises
    :class:`~tidings.transports.base.PublishNotConfirmedError` and nothing of it was
    written. With ``synchronous=full`` (the default) a confirmed batch also survives
    an OS crash or power loss; ``synchronous=normal`` is faster and survives any
    process crash, but the last commits may be lost if the machine goes down.

Partitions and per-key order
    Each event goes to partition ``crc32(key) % partitions`` where the key is
    ``CloudEvent.subject`` (the source for keyless events); the count is fixed when
    the file is created (``?partitions=``, default 8). A group keeps, per partition,
    the offset up to which everything is acknowledged. Within a group a partition is
    leased to one consumer at a time; that consumer reads the partition's rows in
    offset order from the committed offset and delivers them in that order.
    Offsets are assigned in commit order (one writer at a time), so the same key is
    delivered in the order it was published, whichever consumer holds its partition,
    and a new holder resumes exactly where the committed offset says.

Consumer groups
    ``declare_subscription(group, types)`` records the group with every partition's
    committed offset at the start of the log: a group declared after events were
    published still receives every row the file keeps (fan-out: every group reads the
    whole log). The log is shared: a consumer skips rows of types it did not subscribe
    to by their ``type`` column, without reading their body (counted in
    ``Transport.skipped``), and the committed offset moves past them, so every
    consumer of a group should subscribe to the same types. The ``type`` column is the
    delivery's ``routed_type``.

Acknowledgements and redelivery
    An ack is recorded in memory; the committed offset advances to just below the
    oldest unacknowledged delivery of the partition and is written to the file when
    the consumer next reads the log, on every heartbeat and when it stops. Acking
    therefore costs no write of its own; the price is that a crash redelivers what
    was acknowledged since the last write (at-least-once: the inbox makes effects
    happen once). ``nack(requeue=True)`` rewinds the partition to the nacked offset:
    it and every later delivery of the partition come again, in order, marked
    ``redelivered``. ``nack(requeue=False)`` counts as an ack.

Leases, sharing and crashes
    Each consumer heartbeats every ``lease / 4`` seconds: it renews its leases and
    its consumer row, writes committed offsets, and takes or gives partitions so that
    each live consumer holds ``ceil(partitions / consumers)``. A partition is handed
    over only once the giving consumer has no unacknowledged delivery in it, so
    rebalancing never reorders a key. A consumer killed with SIGKILL simply stops
    renewing: after ``lease`` seconds (default 15) its partitions are free and the
    others take them over from the committed offset, redelivering what it had not
    committed (deliveries that may have been seen before are marked ``redelivered``).

What it trades away
    Parallelism within a group is capped at the partition count; a slow message
    holds up the other keys of its partition (head-of-line blocking); a crashed
    consumer's partitions wait for its lease to expire; and a consumer stalled for
    longer than its lease (e.g. a suspended process) may overlap with the new holder,
    so a key's messages can then be processed twice and interleaved. Heartbeats run
    on the consumer's event loop (the iterator yields to it every 10 ms of busy
    delivery), so a handler that blocks the loop for longer than the lease has the
    same effect: give such handlers a thread, or a longer ``lease``. The broker is
    for one machine: WAL needs shared memory, so not a network filesystem. Only one
    writer commits at a time, which bounds publish throughput.

Retention
    Every ``retention`` seconds (default 60, ``0`` turns it off) a consumer deletes,
    per partition, the rows at or below the smallest committed offset of all groups:
    rows no group will read again. Nothing is deleted while no group is declared.
    :meth:`SqliteTransport.compact` does the same on demand.

Consumers poll with a cheap change check (``PRAGMA data_version``, plus a wake-up
from publishes through the same transport) at an interval that starts at 2 ms when
work has just been found and doubles up to ``poll_interval`` (default 0.1 s) while
idle. Every SQLite call runs on one worker thread per transport, never on the event
loop.

URL options: ``partitions``, ``lease``, ``poll_interval``, ``busy_timeout`` (seconds),
``retention``, ``synchronous`` (``full`` or ``normal``), ``batch`` (rows read per
partition at a time), ``max_unacked`` (unacknowledged deliveries per partition
before reading pauses). Example: ``sqlite:///var/broker.db?partitions=16&lease=5``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import sqlite3
import time
import uuid
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from tidings.contracts.cloudevents import STRUCTURED_CONTENT_TYPE, CloudEvent, encode_structured
from tidings.errors import ConfigurationError
from tidings.transports.base import (
    NOTHING_UNROUTABLE,
    Delivery,
    PublishNotConfirmedError,
    Transport,
    TransportError,
    Unroutable,
)

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_HEADERS = {"content-type": STRUCTURED_CONTENT_TYPE}
_FAST_POLL = 0.002
_BREATHER = 0.01

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS tidings_broker_log (
        log_offset INTEGER PRIMARY KEY AUTOINCREMENT,
        partition_no INTEGER NOT NULL,
        source TEXT NOT NULL,
        type TEXT NOT NULL,
        partition_key TEXT,
        body BLOB NOT NULL,
        created_at REAL NOT NULL
    )""",
    """CREATE INDEX IF NOT EXISTS tidings_broker_log_by_partition
        ON tidings_broker_log (partition_no, log_offset)""",
    """CREATE TABLE IF NOT EXISTS tidings_broker_settings (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS tidings_broker_groups (
        group_name TEXT NOT NULL,
        event_type TEXT NOT NULL,
        PRIMARY KEY (group_name, event_type)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS tidings_broker_partitions (
        group_name TEXT NOT NULL,
        partition_no INTEGER NOT NULL,
        committed INTEGER NOT NULL,
        owner TEXT,
        lease_until REAL NOT NULL DEFAULT 0,
        PRIMARY KEY (group_name, partition_no)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS tidings_broker_consumers (
        group_name TEXT NOT NULL,
        consumer_id TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (group_name, consumer_id)
    ) WITHOUT ROWID""",
)


@dataclass(frozen=True, slots=True)
class SqliteBrokerOptions:
    """Tuning of one :class:`SqliteTransport`, read from the URL's query string."""

    partitions: int | None = None
    lease: float = 15.0
    poll_interval: float = 0.1
    busy_timeout: float = 5.0
    retention: float = 60.0
    synchronous: str = "full"
    batch: int = 256
    max_unacked: int = 1024

    @classmethod
    def from_query(cls, query: str) -> SqliteBrokerOptions:
        """Parse ``partitions=16&lease=5``; unknown or invalid options are a ConfigurationError."""
        known = {name for name in cls.__slots__ if not name.startswith("_")}
        values: dict[str, Any] = {}
        for name, raw in parse_qsl(query, keep_blank_values=True):
            if name not in known:
                raise ConfigurationError(
                    f"unknown sqlite:// broker option {name!r}; known: {', '.join(sorted(known))}"
                )
            try:
                if name in ("partitions", "batch", "max_unacked"):
                    values[name] = int(raw)
                elif name == "synchronous":
                    values[name] = raw.lower()
                else:
                    values[name] = float(raw)
            except ValueError as exc:
                raise ConfigurationError(
                    f"sqlite:// broker option {name}={raw!r} is not a number"
                ) from exc
        options = cls(**values)
        options._validate()
        return options

    def _validate(self) -> None:
        if self.partitions is not None and not 1 <= self.partitions <= 4096:
            raise ConfigurationError("sqlite:// option partitions must be between 1 and 4096")
        if min(self.lease, self.poll_interval, self.busy_timeout) <= 0:
            raise ConfigurationError(
                "sqlite:// options lease, poll_interval and busy_timeout must be positive"
            )
        if self.retention < 0:
            raise ConfigurationError("sqlite:// option retention must be >= 0 (0 turns it off)")
        if self.synchronous not in ("full", "normal"):
            raise ConfigurationError("sqlite:// option synchronous must be 'full' or 'normal'")
        if self.batch < 1 or self.max_unacked < 1:
            raise ConfigurationError("sqlite:// options batch and max_unacked must be >= 1")


@dataclass(frozen=True, slots=True)
class PartitionStatus:
    """Where one group stands on one partition (for status and lag reports)."""

    group: str
    partition: int
    committed: int
    end: int
    owner: str | None
    lease_until: float

    @property
    def lag(self) -> int:
        """Offsets not yet committed (an upper bound: it counts other types too)."""
        return max(self.end - self.committed, 0)


# --- consumer state, owned by the event loop ------------------------------------


@dataclass(slots=True, eq=False)
class _Token:
    """One delivery of one offset; ``live`` turns False when a rewind or a lost lease voids it."""

    state: _PartitionState
    offset: int
    acked: bool = False
    live: bool = True


@dataclass(slots=True, eq=False)
class _PartitionState:
    number: int
    committed: int  # as last written to the file
    scanned: int  # highest offset read: delivered, buffered or skipped
    suspect_upto: int = 0  # offsets up to here may have been delivered before
    epoch: int = 0  # bumped whenever buffered reads become stale
    draining: bool = False
    buffer: deque[tuple[int, bytes, str]] = field(default_factory=deque)
    pending: deque[_Token] = field(default_factory=deque)

    def commit_target(self) -> int:
        """The offset below which every row was acknowledged or skipped."""
        pending = self.pending
        while pending and pending[0].acked:
            pending.popleft()
        if pending:
            return pending[0].offset - 1
        if self.buffer:
            return self.buffer[0][0] - 1
        return self.scanned

    def unacked(self) -> bool:
        return any(not token.acked for token in self.pending)

    def drop_buffer(self) -> None:
        if self.buffer:
            self.scanned = self.buffer[0][0] - 1
            self.buffer.clear()
        self.epoch += 1


class _Consumer:
    def __init__(self, group: str, event_types: frozenset[str]) -> None:
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.group = group
        self.event_types = event_types
        self.partitions: dict[int, _PartitionState] = {}
        self.ready: deque[int] = deque()
        self.wake = asyncio.Event()
        self.needs_fetch = True
        self.seen_version: tuple[int, int] = (-1, -1)
        self.hurry = False
        self.retired = False
        self.failure: BaseException | None = None
        self.heartbeat: asyncio.Task[None] | None = None

    def next_delivery(self) -> tuple[_Token, bytes, str, bool] | None:
        while self.ready:
            number = self.ready.popleft()
            state = self.partitions.get(number)
            if state is None or state.draining or not state.buffer:
                continue
            offset, body, routed = state.buffer.popleft()
            if state.buffer:
                self.ready.append(number)
            token = _Token(state, offset)
            state.pending.append(token)
            return token, body, routed, offset <= state.suspect_upto
        return None

    def commits(self) -> dict[int, int]:
        targets: dict[int, int] = {}
        for number, state in self.partitions.items():
            target = state.commit_target()
            if target > state.committed:
                targets[number] = target
        return targets

    def applied_commits(self, commits: dict[int, int]) -> None:
        for number, target in commits.items():
            state = self.partitions.get(number)
            if state is not None:
                state.committed = max(state.committed, target)

    def lose(self, number: int) -> None:
        state = self.partitions.pop(number, None)
        if state is not None:
            for token in state.pending:
                token.live = False
            logger.warning(
                "consumer %s of group %r lost partition %d (its lease expired); "
                "its unacknowledged deliveries will be redelivered to the new holder",
                self.id,
                self.group,
                number,
            )

    def rewind(self, token: _Token) -> None:
        state = token.state
        if token.acked or not token.live or self.partitions.get(state.number) is not state:
            return  # already settled, or voided by an earlier rewind or a lost lease
        if token not in state.pending:
            return
        # the last pending token is the newest delivery: up to it, rows come again
        state.suspect_upto = max(state.suspect_upto, state.pending[-1].offset)
        while state.pending:
            later = state.pending.pop()
            later.live = False
            if later is token:
                break
        state.buffer.clear()
        state.scanned = token.offset - 1
        state.epoch += 1
        self.needs_fetch = True
        self.wake.set()


@dataclass(frozen=True, slots=True)
class _HeartbeatResult:
    owned: frozenset[int]
    claimed: dict[int, tuple[int, int]]  # partition -> (committed, suspect_upto)
    share: int
    committed: bool


# --- the transport ----------------------------------------------------------------


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
        self.partitions = self.options.partitions or 8
        self._db: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        self._consumers: set[_Consumer] = set()
        self._local_version = 0
        self._last_compaction = time.monotonic()

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

    def _conn(self) -> sqlite3.Connection:
        assert self._db is not None, "only called on the worker thread after connect"
        return self._db

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
                db.execute("ROLLBACK")
            raise
        try:
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    def _partition_of(self, key: str) -> int:
        # crc32, not hash(): every process must agree on a key's partition
        return zlib.crc32(key.encode()) % self.partitions

    # --- connection ---

    async def connect(self) -> None:
        """Open (creating if needed) the broker file and its tables."""
        if self._executor is not None:
            return
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tidings-sqlite")
        try:
            self.partitions = await self._call(self._open)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    def _open(self) -> int:
        try:
            db = sqlite3.connect(self.path, timeout=self.options.busy_timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise TransportError(
                f"cannot open the SQLite broker file {self.path!r}: {exc}; check that its "
                "directory exists and is writable"
            ) from exc
        self._db = db
        try:
            return self._prepare(db)
        except BaseException:
            db.close()
            self._db = None
            raise

    def _prepare(self, db: sqlite3.Connection) -> int:
        db.execute(f"PRAGMA busy_timeout = {int(self.options.busy_timeout * 1000)}")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise TransportError(
                f"SQLite broker {self.path}: WAL mode is unavailable (got {mode!r}); "
                "put the file on a local filesystem"
            )
        db.execute(f"PRAGMA synchronous = {self.options.synchronous.upper()}")
        with self._write():
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute(
                "INSERT OR IGNORE INTO tidings_broker_settings (name, value) "
                "VALUES ('partitions', ?)",
                (str(self.partitions),),
            )
            (stored,) = db.execute(
                "SELECT value FROM tidings_broker_settings WHERE name = 'partitions'"
            ).fetchone()
        stored_partitions = int(stored)
        requested = self.options.partitions
        if requested is not None and requested != stored_partitions:
            raise ConfigurationError(
                f"the SQLite broker {self.path} was created with {stored_partitions} "
                f"partitions, the URL asks for {requested}; remove ?partitions= or "
                "set it to the file's count (it cannot change: keys would change partition)"
            )
        return stored_partitions

    async def close(self) -> None:
        """Hand back this transport's partitions (committing acks) and close the file."""
        if self._executor is None:
            return
        for consumer in list(self._consumers):
            with contextlib.suppress(TransportError):
                await self._retire(consumer)
        with contextlib.suppress(TransportError):
            await self._call(self._close_db)
        self._closed = True
        self._executor.shutdown(wait=False)
        self._executor = None

    def _close_db(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # --- publishing ---

    async def publish_batch(self, source: str, events: Sequence[CloudEvent]) -> Unroutable:
        """Append ``events`` in one transaction; return once it is committed.

        The log keeps every event for the groups declared later: nothing is unroutable.
        """
        if not events:
            return NOTHING_UNROUTABLE
        try:
            await self._call(self._insert, source, list(events))
        except TransportError as exc:
            raise PublishNotConfirmedError(
                f"{exc} (none of the {len(events)} events of this batch was written; "
                "retry the whole batch)"
            ) from exc
        self._local_version += 1
        for consumer in self._consumers:
            consumer.wake.set()
        return NOTHING_UNROUTABLE

    def _insert(self, source: str, events: list[CloudEvent]) -> None:
        now = time.time()
        rows = [
            (
                self._partition_of(event.subject if event.subject is not None else event.source),
                source,
                event.type,
                event.subject,
                encode_structured(event),
                now,
            )
            for event in events
        ]
        with self._write() as db:
            db.executemany(
                "INSERT INTO tidings_broker_log "
                "(partition_no, source, type, partition_key, body, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )

    # --- groups ---

    async def declare_subscription(self, group: str, event_types: Collection[str]) -> None:
        """Record ``group`` at the start of the log, if it is not recorded yet: a group
        declared after events were published still reads every row the file keeps."""
        await self._call(self._declare, group, sorted(event_types))

    def _declare(self, group: str, event_types: list[str]) -> None:
        with self._write() as db:
            db.executemany(
                "INSERT OR IGNORE INTO tidings_broker_groups (group_name, event_type) "
                "VALUES (?, ?)",
                [(group, event_type) for event_type in event_types],
            )
            db.executemany(
                "INSERT OR IGNORE INTO tidings_broker_partitions "
                "(group_name, partition_no, committed) VALUES (?, ?, ?)",
                [(group, number, 0) for number in range(self.partitions)],
            )

    async def delete_subscription(self, group: str) -> None:
        """Forget ``group``: its types, offsets and leases (retention then frees its rows)."""
        await self._call(self._forget, group)

    def _forget(self, group: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM tidings_broker_groups WHERE group_name = ?", (group,))
            db.execute("DELETE FROM tidings_broker_partitions WHERE group_name = ?", (group,))

    async def partition_status(self, group: str | None = None) -> list[PartitionStatus]:
        """Committed offset, end of log, holder and lease of each (group, partition)."""
        return await self._call(self._status, group)

    def _status(self, group: str | None) -> list[PartitionStatus]:
        db = self._conn()
        ends = dict(
            db.execute(
                "SELECT partition_no, max(log_offset) FROM tidings_broker_log GROUP BY partition_no"
            ).fetchall()
        )
        rows = db.execute(
            "SELECT group_name, partition_no, committed, owner, lease_until "
            "FROM tidings_broker_partitions WHERE ? IS NULL OR group_name = ? "
            "ORDER BY group_name, partition_no",
            (group, group),
        ).fetchall()
        return [
            PartitionStatus(
                name, number, committed, max(ends.get(number, 0), committed), owner, lease
            )
            for name, number, committed, owner, lease in rows
        ]

    async def backlog(self, group: str) -> int:
        """Messages of the group's types past its committed offsets: its exact lag
        (where :attr:`PartitionStatus.lag` is an upper bound)."""
        return await self._call(self._backlog, group)

    def _backlog(self, group: str) -> int:
        row = (
            self._conn()
            .execute(
                "SELECT count(*) FROM tidings_broker_log AS l "
                "JOIN tidings_broker_partitions AS p "
                "ON p.partition_no = l.partition_no AND p.group_name = ? "
                "WHERE l.log_offset > p.committed AND l.type IN "
                "(SELECT event_type FROM tidings_broker_groups WHERE group_name = ?)",
                (group, group),
            )
            .fetchone()
        )
        return int(row[0])

    async def compact(self) -> int:
        """Delete the rows every group has committed; returns how many were deleted."""
        self._last_compaction = time.monotonic()
        return await self._call(self._compact)

    def _compact(self) -> int:
        deleted = 0
        # one short transaction per partition: producers wait for at most one of them
        for number in range(self.partitions):
            with self._write() as db:
                (floor,) = db.execute(
                    "SELECT min(committed) FROM tidings_broker_partitions WHERE partition_no = ?",
                    (number,),
                ).fetchone()
                if floor is None:
                    continue
                cursor = db.execute(
                    "DELETE FROM tidings_broker_log WHERE partition_no = ? AND log_offset <= ?",
                    (number, floor),
                )
                deleted += cursor.rowcount
        return deleted

    # --- consuming ---

    async def subscribe(self, group: str, event_types: Collection[str]) -> AsyncIterator[Delivery]:
        """Deliveries for ``group`` from the partitions this consumer holds, in offset order."""
        consumer = _Consumer(group, frozenset(event_types))
        await self.declare_subscription(group, consumer.event_types)
        self._consumers.add(consumer)
        try:
            await self._heartbeat(consumer)
            consumer.heartbeat = asyncio.create_task(
                self._heartbeat_loop(consumer), name=f"tidings-sqlite-heartbeat-{group}"
            )
            idle = _FAST_POLL
            breather = time.monotonic()
            while True:
                if consumer.failure is not None:
                    raise consumer.failure
                if consumer.retired:
                    raise TransportError(
                        f"the SQLite broker {self.path} was closed while consuming; "
                        "stop iterating before closing the transport"
                    )
                item = consumer.next_delivery()
                if item is not None:
                    token, body, routed, redelivered = item
                    yield Delivery(
                        body=body,
                        headers=dict(_HEADERS),
                        redelivered=redelivered,
                        routed_type=routed,
                        _transport_token=token,
                        _transport=self,
                    )
                    if time.monotonic() - breather > _BREATHER:
                        # a handler that never awaits would otherwise starve the
                        # heartbeat task on this loop until the leases lapse
                        await asyncio.sleep(0)
                        breather = time.monotonic()
                    continue
                consumer.wake.clear()
                breather = time.monotonic()
                version = (await self._call(self._data_version), self._local_version)
                if consumer.needs_fetch or version != consumer.seen_version or consumer.commits():
                    consumer.needs_fetch = False
                    consumer.seen_version = version
                    await self._fetch(consumer)
                    if consumer.ready or consumer.needs_fetch:
                        idle = _FAST_POLL
                        continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(idle):
                        await consumer.wake.wait()
                idle = min(idle * 2, self.options.poll_interval)
        finally:
            try:
                await self._retire(consumer)
            except TransportError as exc:
                # the leases lapse on their own; a failed hand-back only delays takeover
                logger.warning(
                    "consumer %s could not hand back its partitions: %s", consumer.id, exc
                )

    def _data_version(self) -> int:
        return int(self._conn().execute("PRAGMA data_version").fetchone()[0])

    async def _fetch(self, consumer: _Consumer) -> None:
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
            self._read, consumer.group, consumer.id, sorted(consumer.event_types), requests, commits
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

    def _read(
        self,
        group: str,
        consumer_id: str,
        event_types: list[str],
        requests: dict[int, tuple[int, int]],
        commits: dict[int, int],
    ) -> tuple[bool, dict[int, tuple[int, list[tuple[int, bytes, str]], bool]], int]:
        committed = False
        if commits:
            try:
                with self._write() as db:
                    self._store_commits(db, group, consumer_id, commits)
                committed = True
            except sqlite3.OperationalError as exc:
                # busy: the acks stay in memory and are written next time
                logger.debug("deferring commits of group %r: %s", group, exc)
        db = self._conn()
        marks = ",".join("?" * len(event_types))
        results: dict[int, tuple[int, list[tuple[int, bytes, str]], bool]] = {}
        skipped = 0
        for number, (after, limit) in requests.items():
            (end,) = db.execute(
                "SELECT max(log_offset) FROM tidings_broker_log WHERE partition_no = ?",
                (number,),
            ).fetchone()
            if end is None or end <= after:
                continue
            # rows up to `end` are all committed (one writer, offsets in commit order),
            # so when fewer than `limit` come back, everything up to `end` has been seen.
            # Other groups' types come without their body: skipped, and counted.
            scanned = db.execute(
                f"SELECT log_offset, CASE WHEN type IN ({marks}) THEN body END, type "
                "FROM tidings_broker_log "
                "WHERE partition_no = ? AND log_offset > ? AND log_offset <= ? "
                "ORDER BY log_offset LIMIT ?",
                (*event_types, number, after, end, limit),
            ).fetchall()
            rows = [row for row in scanned if row[1] is not None]
            skipped += len(scanned) - len(rows)
            full = len(scanned) == limit
            results[number] = (scanned[-1][0] if full else end, rows, full)
        return committed, results, skipped

    @staticmethod
    def _store_commits(
        db: sqlite3.Connection, group: str, consumer_id: str, commits: dict[int, int]
    ) -> None:
        # guarded by owner: a consumer that lost its lease must not move the new holder's offset
        db.executemany(
            "UPDATE tidings_broker_partitions SET committed = max(committed, ?) "
            "WHERE group_name = ? AND partition_no = ? AND owner = ?",
            [(target, group, number, consumer_id) for number, target in commits.items()],
        )

    async def _heartbeat_loop(self, consumer: _Consumer) -> None:
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
                    deleted = await self._call(self._compact)
                    logger.debug("retention deleted %d rows from %s", deleted, self.path)
                except TransportError as exc:
                    logger.warning("retention on %s failed: %s", self.path, exc)

    async def _heartbeat(self, consumer: _Consumer) -> None:
        release = [
            number
            for number, state in consumer.partitions.items()
            if state.draining and not state.unacked()
        ]
        commits = consumer.commits()
        result = await self._call(self._beat, consumer.group, consumer.id, commits, release, False)
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
            consumer.partitions[number] = _PartitionState(
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

    def _beat(
        self,
        group: str,
        consumer_id: str,
        commits: dict[int, int],
        release: list[int],
        retiring: bool,
    ) -> _HeartbeatResult:
        lease = self.options.lease
        with self._write() as db:
            now = time.time()
            self._store_commits(db, group, consumer_id, commits)
            db.executemany(
                "UPDATE tidings_broker_partitions SET owner = NULL, lease_until = 0 "
                "WHERE group_name = ? AND partition_no = ? AND owner = ?",
                [(group, number, consumer_id) for number in release],
            )
            if retiring:
                # keeping the owner with a lapsed lease tells the next holder that
                # deliveries were left unacknowledged, so it marks them redelivered
                db.execute(
                    "UPDATE tidings_broker_partitions SET lease_until = 0 "
                    "WHERE group_name = ? AND owner = ?",
                    (group, consumer_id),
                )
                db.execute(
                    "DELETE FROM tidings_broker_consumers WHERE group_name = ? AND consumer_id = ?",
                    (group, consumer_id),
                )
                return _HeartbeatResult(frozenset(), {}, 0, True)
            db.execute(
                "INSERT INTO tidings_broker_consumers (group_name, consumer_id, expires_at) "
                "VALUES (?, ?, ?) ON CONFLICT (group_name, consumer_id) "
                "DO UPDATE SET expires_at = excluded.expires_at",
                (group, consumer_id, now + lease),
            )
            db.execute(
                "DELETE FROM tidings_broker_consumers WHERE group_name = ? AND expires_at < ?",
                (group, now),
            )
            db.execute(
                "UPDATE tidings_broker_partitions SET lease_until = ? "
                "WHERE group_name = ? AND owner = ?",
                (now + lease, group, consumer_id),
            )
            (live,) = db.execute(
                "SELECT count(*) FROM tidings_broker_consumers WHERE group_name = ?", (group,)
            ).fetchone()
            share = math.ceil(self.partitions / max(int(live), 1))
            rows = db.execute(
                "SELECT partition_no, committed, owner, lease_until "
                "FROM tidings_broker_partitions WHERE group_name = ? ORDER BY partition_no",
                (group,),
            ).fetchall()
            owned = {number for number, _, owner, _ in rows if owner == consumer_id}
            claimed: dict[int, tuple[int, int]] = {}
            for number, committed, owner, lease_until in rows:
                if len(owned) + len(claimed) >= share:
                    break
                if owner == consumer_id or (owner is not None and lease_until >= now):
                    continue
                db.execute(
                    "UPDATE tidings_broker_partitions SET owner = ?, lease_until = ? "
                    "WHERE group_name = ? AND partition_no = ?",
                    (consumer_id, now + lease, group, number),
                )
                suspect = 0
                if owner is not None:
                    # taken from a holder that died or left deliveries unacknowledged:
                    # anything it could have read may have been delivered already
                    (end,) = db.execute(
                        "SELECT max(log_offset) FROM tidings_broker_log WHERE partition_no = ?",
                        (number,),
                    ).fetchone()
                    suspect = int(end or 0)
                claimed[number] = (int(committed), suspect)
        return _HeartbeatResult(frozenset(owned | set(claimed)), claimed, share, True)

    async def _retire(self, consumer: _Consumer) -> None:
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
        await self._call(self._beat, consumer.group, consumer.id, commits, clean, True)

    # --- acknowledgements (in memory; written by the next read or heartbeat) ---

    async def ack(self, delivery: Delivery) -> None:
        """Mark the delivery handled; the committed offset moves past it when it can."""
        token = delivery._transport_token
        if isinstance(token, _Token):
            token.acked = True

    async def nack(self, delivery: Delivery, *, requeue: bool = True) -> None:
        """Rewind the partition to this delivery (``requeue``), or skip it like an ack."""
        token = delivery._transport_token
        if not isinstance(token, _Token):
            return
        if not requeue:
            token.acked = True
            return
        for consumer in self._consumers:
            if consumer.partitions.get(token.state.number) is token.state:
                consumer.rewind(token)
                return
