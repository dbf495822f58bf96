"""The hand-written pipeline of ``embedded_end_to_end.py``: a relay and a consumer process
over SQLite files of their own, with plain ``sqlite3``.

What a team would write without tidings, with the durability tidings gives:

- ``relay``: reads up to 500 outbox rows in position order (the outbox tidings writes,
  WAL, ``synchronous=NORMAL`` as tidings' engines set it), encodes each as a
  structured-mode CloudEvent with the payload spliced in (as tidings does), appends
  them to a log table in the broker file (the log tidings' SQLite broker keeps: WAL,
  ``synchronous=FULL`` as its default, partition ``crc32(key) % 8``) in one
  ``BEGIN IMMEDIATE`` transaction, then deletes them from the outbox. Idle, it polls
  every 5 ms.
- ``consume``: reads up to 200 log rows past its offset, decodes them and validates
  the payload with the same pydantic model, and in one transaction of its own
  database inserts the inbox rows (skipping ids already there), one effect row per
  event (stamped with ``time.monotonic()``) and its new offset. Idle, it polls every
  5 ms.

    python _embedded_raw.py relay OUTBOX_FILE BROKER_FILE
    python _embedded_raw.py consume BROKER_FILE INBOX_FILE GROUP
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import sys
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _relay_common import ThingUpdatedIntegrationEvent

WINDOW = 500
BATCH = 200
IDLE = 0.005
PARTITIONS = 8
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_READ_OUTBOX = (
    "SELECT position, event_id, event_type, event_version, source, occurred_at, "
    "partition_key, correlation_id, causation_id, payload FROM tidings_outbox "
    "WHERE published_at IS NULL ORDER BY position LIMIT ?"
)
_LOG = """CREATE TABLE IF NOT EXISTS bench_raw_log (
    log_offset INTEGER PRIMARY KEY AUTOINCREMENT,
    partition_no INTEGER NOT NULL,
    source TEXT NOT NULL,
    type TEXT NOT NULL,
    partition_key TEXT,
    body BLOB NOT NULL,
    created_at REAL NOT NULL
)"""
_LOG_INDEX = (
    "CREATE INDEX IF NOT EXISTS bench_raw_log_part ON bench_raw_log (partition_no, log_offset)"
)
_OFFSETS = (
    "CREATE TABLE IF NOT EXISTS bench_raw_offsets (consumer TEXT PRIMARY KEY, log_offset INTEGER)"
)


def _open(path: str, synchronous: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    return db


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def create_files(broker: Path, inbox: Path) -> None:
    """The broker's log table and the consumer's offset table (the inbox and effect
    tables are tidings' and the benchmark's, created by the caller)."""
    with contextlib.closing(_open(str(broker), "FULL")) as db:
        db.execute(_LOG)
        db.execute(_LOG_INDEX)
    with contextlib.closing(_open(str(inbox), "NORMAL")) as db:
        db.execute(_OFFSETS)


def _body(row: Any) -> bytes:
    _, event_id, event_type, version, source, occurred_at, key, correlation, causation, data = row
    attributes = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": event_type,
        "time": occurred_at.replace(" ", "T") + "Z",
        "datacontenttype": "application/json",
        "dataversion": str(version),
        "subject": key,
        "correlationid": correlation,
    }
    if causation is not None:
        attributes["causationid"] = causation
    head = _COMPACT.encode(attributes)
    return f'{head[:-1]},"data":{data}}}'.encode()


def relay(outbox_path: str, broker_path: str) -> None:
    outbox = _open(outbox_path, "NORMAL")
    broker = _open(broker_path, "FULL")
    print("ready", flush=True)
    while True:
        rows = outbox.execute(_READ_OUTBOX, (WINDOW,)).fetchall()
        if rows:
            now = time.time()
            log = [
                (zlib.crc32(row[6].encode()) % PARTITIONS, row[4], row[2], row[6], _body(row), now)
                for row in rows
            ]
            with _transaction(broker):
                broker.executemany(
                    "INSERT INTO bench_raw_log (partition_no, source, type, partition_key, "
                    "body, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    log,
                )
            # positions are assigned under SQLite's single write lock, in commit order
            with _transaction(outbox):
                outbox.execute("DELETE FROM tidings_outbox WHERE position <= ?", (rows[-1][0],))
        if len(rows) < WINDOW:
            time.sleep(IDLE)


def _decode(body: bytes) -> ThingUpdatedIntegrationEvent:
    message = json.loads(body)
    if message.get("specversion") != "1.0":
        raise ValueError("not a CloudEvents 1.0 message")
    if message.get("type") != ThingUpdatedIntegrationEvent.event_type:
        raise ValueError("unexpected event type")
    if message.get("dataversion") != "1":
        raise ValueError("unexpected version")
    payload = message["data"]
    payload["event_id"] = message["id"]
    payload["occurred_at"] = message["time"]
    return ThingUpdatedIntegrationEvent.model_validate(payload)


def consume(broker_path: str, inbox_path: str, group: str) -> None:
    broker = _open(broker_path, "FULL")
    inbox = _open(inbox_path, "NORMAL")
    stored = inbox.execute(
        "SELECT log_offset FROM bench_raw_offsets WHERE consumer = ?", (group,)
    ).fetchone()
    offset = stored[0] if stored else 0
    print("ready", flush=True)
    while True:
        rows = broker.execute(
            "SELECT log_offset, body FROM bench_raw_log WHERE log_offset > ? "
            "ORDER BY log_offset LIMIT ?",
            (offset, BATCH),
        ).fetchall()
        if not rows:
            time.sleep(IDLE)
            continue
        events = [_decode(body) for _, body in rows]
        ids = [str(event.event_id) for event in events]
        processed_at = datetime.now(UTC).replace(tzinfo=None).isoformat(" ")
        now = time.monotonic()
        offset = rows[-1][0]
        with _transaction(inbox):
            marks = ",".join("?" * len(ids))
            seen = {
                row[0]
                for row in inbox.execute(
                    "SELECT event_id FROM tidings_inbox "
                    f"WHERE consumer = ? AND event_id IN ({marks})",
                    (group, *ids),
                )
            }
            fresh = [event for event in events if str(event.event_id) not in seen]
            inbox.executemany(
                "INSERT INTO tidings_inbox (consumer, event_id, processed_at) VALUES (?, ?, ?)",
                [(group, str(event.event_id), processed_at) for event in fresh],
            )
            inbox.executemany(
                "INSERT INTO bench_user_effects (event_id, thing_id, seq, at) VALUES (?, ?, ?, ?)",
                [(str(event.event_id), event.thing_id, event.seq, now) for event in fresh],
            )
            inbox.execute(
                "INSERT INTO bench_raw_offsets (consumer, log_offset) VALUES (?, ?) "
                "ON CONFLICT (consumer) DO UPDATE SET log_offset = excluded.log_offset",
                (group, offset),
            )


if __name__ == "__main__":
    # SIGTERM ends the process between statements' effects as SIGKILL would: every
    # transaction is atomic, and what was committed stays.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    role, *arguments = sys.argv[1:]
    if role == "relay":
        relay(*arguments)
    else:
        consume(*arguments)
