"""Telling a database outage from a failing event, and waiting the outage out."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tidings.application.retry import RetryPolicy
from tidings.redaction import redact

logger = logging.getLogger("tidings.consumer")

_PROBE = text("SELECT 1")
_PROBE_TIMEOUT = 5.0


class DatabaseWatch:
    """Probes the consuming context's database and waits, backing off, while it is away."""

    def __init__(
        self, engine: AsyncEngine, group: str, retry: RetryPolicy, stopping: asyncio.Event
    ) -> None:
        self._engine = engine
        self._group = group
        self._retry = retry
        self._stopping = stopping
        self.outages = 0

    async def reachable(self) -> bool:
        """True when the database answers ``SELECT 1`` within a few seconds."""
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT):
                async with self._engine.connect() as connection:
                    await connection.execute(_PROBE)
        except Exception:
            return False
        return True

    async def wait_for(self, error: BaseException) -> bool:
        """Wait until the database answers again; False if the consumer stopped first."""
        self.outages += 1
        logger.warning(
            "%s: the database is unreachable (%s); waiting for it, nothing is counted "
            "against the events meanwhile",
            self._group,
            redact(repr(error)),
        )
        attempt = 0
        while not self._stopping.is_set():
            attempt += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._retry.delay(attempt))
            if await self.reachable():
                logger.warning("%s: the database is back; going on", self._group)
                return True
        return False
