"""How an idle relay learns that new rows were committed.

PostgreSQL: ``LISTEN`` on the channel the outbox trigger notifies (a dedicated asyncpg
connection). Elsewhere, or while that connection is down: polling with an interval
that starts at a few milliseconds and doubles while idle, up to a cap.

A SQLite file database also wakes the relay early: between polls, a connection of its
own reads ``PRAGMA data_version`` (which changes whenever another connection commits;
a read of shared memory, microseconds, so it runs on the event loop) every 2 ms
for a second after rows were found, every 10 ms otherwise. An event committed on an
idle outbox then waits milliseconds for the relay, not the backed-off interval. Most
commits to the file are not new events, though: the relay's own marks, and, when a
context consumes into the same file, its inbox and effects. So a changed counter is
checked with one indexed probe for a pending row on the same connection (microseconds);
only when one exists does the relay read the outbox. The probe follows the counter, so
a commit landing after it changes the counter again and is seen at the next check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from typing import Any

from sqlalchemy.engine import URL

from tidings.persistence.engines import asyncpg_tls
from tidings.persistence.tables import OUTBOX_CHANNEL, outbox
from tidings.redaction import redact
from tidings.transports.sqlite.changes import ChangeCounter

logger = logging.getLogger("tidings.relay")

# How often a SQLite outbox is checked for commits: while rows keep coming (for
# _HOT_PERIOD after the last were found), and otherwise.
_HOT_CHECK = 0.002
_COLD_CHECK = 0.01
_HOT_PERIOD = 1.0
# Any row the relay has still to send (the pending-rows index answers it).
_PENDING_PROBE = f"SELECT EXISTS (SELECT 1 FROM {outbox.name} WHERE published_at IS NULL)"


class Wakeup:
    """Waits for "the outbox may have new rows", as cheaply as the database allows."""

    def __init__(self, url: URL, *, min_interval: float = 0.005, max_interval: float = 1.0) -> None:
        self._url = url
        self.min_interval = min_interval
        self.max_interval = max_interval
        self._interval = min_interval
        self._event = asyncio.Event()
        self._connection: Any = None
        self._postgres = url.get_backend_name() == "postgresql"
        self._retry_listen_at = 0.0
        self._sqlite_file = (
            url.database
            if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
            else None
        )
        self._watch: ChangeCounter | None = None
        self._version: int | None = None
        self._hot_until = 0.0

    @property
    def listening(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    async def start(self) -> None:
        """Start listening where the database supports it; polling otherwise."""
        if self._sqlite_file is not None:
            self._start_watching(self._sqlite_file)
        if not self._postgres:
            return
        self._retry_listen_at = time.monotonic() + 5.0
        try:
            import asyncpg
        except ImportError:  # pragma: no cover - the postgres extra brings asyncpg
            return
        # The same TLS as the engine's: libpq's options become asyncpg's ``ssl``.
        options: dict[str, Any] = dict(self._url.query)
        asyncpg_tls(options)
        plain = self._url.set(drivername="postgresql", query={})
        dsn = plain.render_as_string(hide_password=False)
        try:
            self._connection = await asyncpg.connect(dsn, timeout=5, **options)
            await self._connection.add_listener(OUTBOX_CHANNEL, self._notified)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            logger.warning("LISTEN unavailable (%s); polling instead", redact(str(exc)))
            self._connection = None

    def _notified(self, *_: Any) -> None:
        self._event.set()

    def _start_watching(self, path: str) -> None:
        try:
            self._watch = ChangeCounter(path)
        except sqlite3.Error as exc:
            logger.warning("cannot watch %s for commits (%s); polling only", path, exc)
            return
        self._version = self._watch.version()

    def _committed_since(self) -> bool:
        """Whether the file changed since the last check and holds rows to send."""
        if self._watch is None:
            return True
        version = self._watch.version()
        changed = version is None or version != self._version
        self._version = version
        return changed and self._watch.value(_PENDING_PROBE) != 0

    def busy(self) -> None:
        """Rows were found: poll fast again next time the outbox runs dry."""
        self._interval = self.min_interval
        self._hot_until = time.monotonic() + _HOT_PERIOD

    async def wait(self) -> None:
        """Return when notified, or after the current polling interval."""
        if self._postgres and not self.listening and time.monotonic() >= self._retry_listen_at:
            await self.stop()
            await self.start()  # after a database restart: listen again
        timeout = self.max_interval if self.listening else self._interval
        if self._watch is not None:
            await self._watch_commits(timeout)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()
        if not self.listening:
            self._interval = min(self._interval * 2, self.max_interval)

    async def _watch_commits(self, timeout: float) -> None:
        """Return at the first commit seen, or after ``timeout``. The version is kept
        from one wait to the next, so a commit made while the relay was reading wakes
        the next wait at once (at worst one read for nothing)."""
        deadline = time.monotonic() + timeout
        while not self._committed_since():
            now = time.monotonic()
            if now >= deadline:
                return
            step = _HOT_CHECK if now < self._hot_until else _COLD_CHECK
            await asyncio.sleep(min(step, deadline - now))

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close(timeout=2)
            self._connection = None
