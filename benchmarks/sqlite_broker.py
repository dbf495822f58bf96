"""Throughput of the embedded SQLite broker, as ratios to raw sqlite3 in the same run.

The baseline inserts the same encoded bodies with ``executemany`` into a similar table
(same columns, index, WAL mode and ``synchronous`` setting), one transaction per batch:
the floor any SQLite-file broker pays. The broker then publishes the same events through
``SqliteTransport.publish_batch`` (encoding included) and one consumer receives and acks
all of them. The last line is one JSON object for scripts.

    python benchmarks/sqlite_broker.py [--events 20000] [--batch 500] [--synchronous full]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import tempfile
import time
from pathlib import Path

from tidings.contracts.cloudevents import CloudEvent, encode_structured
from tidings.domain.ids import uuid7
from tidings.transports import open_transport


def make_events(count: int) -> list[CloudEvent]:
    return [
        CloudEvent(
            id=str(uuid7()),
            source="bench",
            type="bench.happened",
            subject=f"key-{i % 100}",
            time="2026-01-01T00:00:00Z",
            data_json=json.dumps({"seq": i, "name": "x" * 40}).encode(),
        )
        for i in range(count)
    ]


def raw_inserts(path: Path, events: list[CloudEvent], batch: int, synchronous: str) -> float:
    """Seconds to insert the encoded bodies with plain sqlite3, batch by batch."""
    rows = [
        (i % 8, e.source, e.type, e.subject, encode_structured(e), 0.0)
        for i, e in enumerate(events)
    ]
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA synchronous = {synchronous}")
        db.execute(
            "CREATE TABLE log (id INTEGER PRIMARY KEY AUTOINCREMENT, part INTEGER, source TEXT, "
            "type TEXT, key TEXT, body BLOB, created_at REAL)"
        )
        db.execute("CREATE INDEX log_part ON log (part, id)")
        started = time.perf_counter()
        for start in range(0, len(rows), batch):
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO log VALUES (NULL, ?, ?, ?, ?, ?, ?)", rows[start : start + batch]
            )
            db.execute("COMMIT")
        return time.perf_counter() - started


async def broker(url: str, events: list[CloudEvent], batch: int) -> tuple[float, float]:
    """Seconds to publish all events, then seconds for one consumer to receive and ack them."""
    async with open_transport(url) as transport:
        await transport.declare_subscription("bench", {"bench.happened"})
        started = time.perf_counter()
        for start in range(0, len(events), batch):
            await transport.publish_batch("bench", events[start : start + batch])
        published = time.perf_counter() - started
        started = time.perf_counter()
        received = 0
        async for delivery in transport.subscribe("bench", {"bench.happened"}):
            await delivery.ack()
            received += 1
            if received == len(events):
                break
        consumed = time.perf_counter() - started
    return published, consumed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--synchronous", choices=("full", "normal"), default="full")
    args = parser.parse_args()
    events = make_events(args.events)
    with tempfile.TemporaryDirectory() as directory:
        raw = raw_inserts(Path(directory) / "raw.db", events, args.batch, args.synchronous)
        url = f"sqlite:///{Path(directory) / 'broker.db'}?synchronous={args.synchronous}"
        published, consumed = asyncio.run(broker(url, events, args.batch))
    raw_rate, publish_rate, consume_rate = (args.events / s for s in (raw, published, consumed))
    print(f"{args.events} events in batches of {args.batch}, synchronous={args.synchronous}")
    for label, rate in (
        ("raw sqlite3 executemany", raw_rate),
        ("broker publish", publish_rate),
        ("broker consume + ack", consume_rate),
    ):
        print(f"{label:<24} {rate:12,.0f} events/s  ({rate / raw_rate:.2f}x raw)")
    print(
        json.dumps(
            {
                "publish_ratio": round(publish_rate / raw_rate, 3),
                "consume_events_per_s": round(consume_rate),
                "consume_ratio": round(consume_rate / raw_rate, 3),
                "raw_events_per_s": round(raw_rate),
                "publish_events_per_s": round(publish_rate),
            }
        )
    )


if __name__ == "__main__":
    main()
