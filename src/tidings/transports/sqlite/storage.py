"""The statements run on the broker file: the log, consumer groups, committed offsets
and partition leases.

Everything here runs on the transport's one worker thread (see
:class:`~tidings.transports.sqlite.transport.SqliteTransport`), never on the event loop.
"""

from __future__ import annotations

import functools
import logging
import math
import sqlite3
import time
import zlib

from tidings.contracts.cloud_event import CloudEvent
from tidings.contracts.cloudevents import encode_structured
from tidings.transports.sqlite.connection import BrokerConnection
from tidings.transports.sqlite.options import PartitionStatus
from tidings.transports.sqlite.state import HeartbeatResult

logger = logging.getLogger("tidings.transports.sqlite")


@functools.cache
def _read_statement(partitions: int, types: int) -> str:
    """The rows past an offset of each of ``partitions`` partitions, in one statement."""
    marks = ",".join("?" * types)
    one = (
        "SELECT * FROM (SELECT partition_no, log_offset, "
        f"CASE WHEN type IN ({marks}) THEN body END, type FROM tidings_broker_log "
        "WHERE partition_no = ? AND log_offset > ? ORDER BY log_offset LIMIT ?)"
    )
    return " UNION ALL ".join([one] * partitions) + " ORDER BY 1, 2"


class BrokerFile(BrokerConnection):
    """The statements the transport runs on the broker file."""

    def _partition_of(self, key: str) -> int:
        # crc32, not hash(): every process must agree on a key's partition
        return zlib.crc32(key.encode()) % self.partitions

    def insert(self, source: str, events: list[CloudEvent]) -> None:
        """Append ``events`` in one transaction: its commit is the confirmation."""
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
        with self._write(durable=True) as db:
            db.executemany(
                "INSERT INTO tidings_broker_log "
                "(partition_no, source, type, partition_key, body, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )

    # --- groups ---
    def declare(self, group: str, event_types: list[str]) -> None:
        """Record ``group`` and its types, every partition at the start of the log."""
        with self._write(durable=True) as db:
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

    def forget(self, group: str) -> None:
        """Delete ``group``: its types, offsets and leases."""
        with self._write(durable=True) as db:
            db.execute("DELETE FROM tidings_broker_groups WHERE group_name = ?", (group,))
            db.execute("DELETE FROM tidings_broker_partitions WHERE group_name = ?", (group,))

    def status(self, group: str | None) -> list[PartitionStatus]:
        """Committed offset, end of log, holder and lease of each (group, partition)."""
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

    def backlog(self, group: str) -> int:
        """Messages of the group's types past its committed offsets."""
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

    def compact(self) -> int:
        """Delete the rows every group has committed; how many were deleted."""
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

    def read(
        self,
        group: str,
        consumer_id: str,
        event_types: list[str],
        requests: dict[int, tuple[int, int]],
        commits: dict[int, int],
    ) -> tuple[bool, dict[int, tuple[int, list[tuple[int, bytes, str]], bool]], int]:
        """Read the ``requests`` (partition -> (after, limit)), then write ``commits``.

        Returns whether the commits were written, per partition (scanned up to, rows of
        the subscribed types, whether the limit was reached) and how many rows of other
        types were skipped.
        """
        results: dict[int, tuple[int, list[tuple[int, bytes, str]], bool]] = {}
        skipped = 0
        if requests:
            scanned: dict[int, list[tuple[int, bytes, str]]] = {}
            # A few partitions per statement, one call into SQLite for them (within
            # SQLite's limits on compound selects and parameters).
            wanted = list(requests.items())
            step = max(1, min(32, 900 // (len(event_types) + 3)))
            for start in range(0, len(wanted), step):
                chunk = wanted[start : start + step]
                parameters = [
                    value
                    for number, (after, limit) in chunk
                    for value in (*event_types, number, after, limit)
                ]
                statement = _read_statement(len(chunk), len(event_types))
                for partition, offset, body, routed in self._conn().execute(statement, parameters):
                    scanned.setdefault(partition, []).append((offset, body, routed))
            for number, found in scanned.items():
                # Offsets are assigned under the write lock in commit order, so every row
                # up to the last one read is committed and was seen. Other groups' types
                # come without their body: skipped, and counted.
                rows = [row for row in found if row[1] is not None]
                skipped += len(found) - len(rows)
                full = len(found) == requests[number][1]
                results[number] = (found[-1][0], rows, full)
        committed = False
        if commits:
            try:
                with self._write() as db:
                    self.store_commits(db, group, consumer_id, commits)
                committed = True
            except sqlite3.OperationalError as exc:
                # busy: the acks stay in memory and are written next time
                logger.debug("deferring commits of group %r: %s", group, exc)
        return committed, results, skipped

    @staticmethod
    def store_commits(
        db: sqlite3.Connection, group: str, consumer_id: str, commits: dict[int, int]
    ) -> None:
        """Move the committed offsets of partitions ``consumer_id`` still holds."""
        # guarded by owner: a consumer that lost its lease must not move the new holder's offset
        db.executemany(
            "UPDATE tidings_broker_partitions SET committed = max(committed, ?) "
            "WHERE group_name = ? AND partition_no = ? AND owner = ?",
            [(target, group, number, consumer_id) for number, target in commits.items()],
        )

    def beat(
        self,
        group: str,
        consumer_id: str,
        commits: dict[int, int],
        release: list[int],
        retiring: bool,
    ) -> HeartbeatResult:
        """Renew the consumer and its leases, write commits, release and claim partitions."""
        lease = self.options.lease
        with self._write() as db:
            now = time.time()
            self.store_commits(db, group, consumer_id, commits)
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
                return HeartbeatResult(frozenset(), {}, 0, True)
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
        return HeartbeatResult(frozenset(owned | set(claimed)), claimed, share, True)
