"""The relay's wake-up on a SQLite outbox: a commit ends the wait, not the interval."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

from sqlalchemy.engine import make_url

from tidings.outbox.wakeup import Wakeup


def _database(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("CREATE TABLE rows (x INTEGER)")
    return db


async def test_a_commit_by_another_connection_ends_a_long_wait(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with contextlib.closing(_database(path)) as producer:
        # an interval far longer than the bound below: only the commit can end the wait
        wakeup = Wakeup(make_url(f"sqlite:///{path}"), min_interval=600, max_interval=600)
        await wakeup.start()
        try:
            waiting = asyncio.ensure_future(wakeup.wait())
            await asyncio.sleep(0.05)
            assert not waiting.done()
            producer.execute("INSERT INTO rows VALUES (1)")
            await asyncio.wait_for(waiting, 30)
        finally:
            await wakeup.stop()


async def test_a_commit_made_between_two_waits_ends_the_next_one_at_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    with contextlib.closing(_database(path)) as producer:
        wakeup = Wakeup(make_url(f"sqlite:///{path}"), min_interval=600, max_interval=600)
        await wakeup.start()
        try:
            producer.execute("INSERT INTO rows VALUES (1)")  # while the relay was reading
            await asyncio.wait_for(wakeup.wait(), 30)
        finally:
            await wakeup.stop()
