"""How an idle relay learns that new rows were committed.

PostgreSQL: ``LISTEN`` on the channel the outbox trigger notifies (a dedicated asyncpg
connection). Elsewhere, or while that connection is down: polling with an interval
that starts at a few milliseconds and doubles while idle, up to a cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from sqlalchemy.engine import URL

from tidings.persistence.engines import asyncpg_tls
from tidings.persistence.tables import OUTBOX_CHANNEL
from tidings.redaction import redact

logger = logging.getLogger("tidings.relay")


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

    @property
    def listening(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    async def start(self) -> None:
        """Start listening where the database supports it; polling otherwise."""
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

    def busy(self) -> None:
        """Rows were found: poll fast again next time the outbox runs dry."""
        self._interval = self.min_interval

    async def wait(self) -> None:
        """Return when notified, or after the current polling interval."""
        if self._postgres and not self.listening and time.monotonic() >= self._retry_listen_at:
            await self.stop()
            await self.start()  # after a database restart: listen again
        timeout = self.max_interval if self.listening else self._interval
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()
        if not self.listening:
            self._interval = min(self._interval * 2, self.max_interval)

    async def stop(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close(timeout=2)
            self._connection = None
