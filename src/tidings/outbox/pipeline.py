"""The relay's pipeline: the next rows read while a batch is confirmed, and the mark
(delete or archive) of the batch before still running while the next one is published.

Pipelined, because the database and the broker each wait for the other otherwise. A
batch is marked only once confirmed; a read from the start of the outbox leaves out
the confirmed rows whose mark is in flight, so that no confirmed row is read (and sent)
again. Reads are always "the oldest pending rows of the partitions owned, in position
order" (:attr:`ReadPipeline.ownership`); what was read ahead for another set of
partitions must be dropped (:meth:`ReadPipeline.drop`) when the set changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

from sqlalchemy.exc import DBAPIError, OperationalError

from tidings.contracts.envelope import OutboxRow
from tidings.contracts.signing import KeyRing
from tidings.outbox.partitions import Ownership
from tidings.outbox.stats import SourceGroups, source_groups
from tidings.outbox.store import OutboxStore, Retention
from tidings.transports.base import TransportError

#: Failures the relay retries with backoff (after dropping the pipeline).
RETRYABLE = (TransportError, OperationalError, DBAPIError, OSError, TimeoutError)
# While batches are full the relay reads ahead past the batch in flight; at least this
# often it reads from the start of the outbox again, to pick up rows whose transaction
# took a position early but committed after later positions had been read.
_RESCAN_INTERVAL = 1.0

#: Rows, and their CloudEvents grouped by consecutive source.
Batch = tuple[Sequence[OutboxRow], SourceGroups]


class ReadPipeline:
    """Reads ahead and marks in the background for one relay."""

    def __init__(self, store: OutboxStore, batch_size: int) -> None:
        self.store = store
        self.batch_size = batch_size
        #: The partitions read (None: every row, before the first heartbeat).
        self.ownership: Ownership | None = None
        #: Signs every event as its wire form is built; None: unsigned.
        self.signing: KeyRing | None = None
        self._read_ahead: asyncio.Future[Batch] | None = None
        self._marking: asyncio.Future[None] | None = None
        # Positions confirmed by the broker whose delete (or archive) is in flight.
        self._marking_positions: frozenset[int] = frozenset()
        self._rescan_at = 0.0

    async def next_batch(self) -> Batch:
        """The rows to publish next: those read ahead, else the oldest pending ones."""
        if self._read_ahead is not None:
            read_ahead, self._read_ahead = self._read_ahead, None
            batch = await read_ahead
            if batch[0]:
                return batch
        # Reading from the start does not wait for the mark in flight (a round trip on
        # the latency path): rows it may still return are confirmed ones, left out.
        self._rescan_at = time.monotonic() + _RESCAN_INTERVAL
        batch = await self._read(after=0, confirmed=self._marking_positions)
        if not batch[0] and self._marking is not None:
            # Only confirmed rows came back: once they are gone, later ones may follow.
            await self.settle_marking()
            batch = await self._read(after=0)
        return batch

    def read_ahead(self, rows: Sequence[OutboxRow]) -> None:
        """Start reading the rows after a full batch ``rows``, until the next rescan."""
        if len(rows) == self.batch_size and time.monotonic() < self._rescan_at:
            self._read_ahead = asyncio.ensure_future(self._read(after=rows[-1]["position"]))

    async def mark(self, rows: Sequence[OutboxRow], retention: Retention) -> None:
        """Start marking the confirmed ``rows`` (after the mark before: one in flight)."""
        await self.settle_marking()
        positions = [row["position"] for row in rows]
        self._marking_positions = frozenset(positions)
        self._marking = asyncio.ensure_future(self.store.mark_published(positions, retention))

    async def _read(self, after: int, confirmed: frozenset[int] = frozenset()) -> Batch:
        """Rows past ``after`` (except ``confirmed`` ones) and their CloudEvents.

        Read ahead, the events are built while the broker confirms the batch before,
        when this process would otherwise wait.
        """
        rows = await self.store.fetch_pending(
            self.batch_size, after=after, ownership=self.ownership
        )
        if confirmed:
            rows = [row for row in rows if row["position"] not in confirmed]
        return rows, source_groups(rows, self.signing)

    async def settle_marking(self) -> None:
        """Wait for the mark in flight; raises its error."""
        marking, self._marking = self._marking, None
        if marking is not None:
            try:
                await marking
            finally:
                self._marking_positions = frozenset()

    async def drop(self) -> None:
        """Forget the rows read ahead; let the mark in flight finish (its rows were sent)."""
        read_ahead, self._read_ahead = self._read_ahead, None
        if read_ahead is not None:
            read_ahead.cancel()
            await asyncio.wait({read_ahead})
            if not read_ahead.cancelled():
                read_ahead.exception()  # retrieved: asyncio would log it otherwise
        with contextlib.suppress(*RETRYABLE):
            await self.settle_marking()
