"""The relay's wake-up on a SQLite outbox: a commit ends the wait, not the interval.

Only a commit that leaves a row to send: the relay's own marks and a consuming context's
inbox writes in the same file do not send it reading an empty outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

from sqlalchemy import text, update

from tidings import BoundedContext, IntegrationEvent
from tidings.outbox.wakeup import Wakeup
from tidings.persistence.tables import outbox


class MeterTickedIntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = "meter.ticked"
    meter: str


@contextlib.asynccontextmanager
async def _outbox(path: Path) -> AsyncIterator[tuple[BoundedContext, Wakeup]]:
    context = BoundedContext("meter", database_url=f"sqlite:///{path}")
    context.create_tables()
    with context.engine.begin() as connection:
        connection.execute(text("CREATE TABLE effects (x INTEGER)"))
    # an interval far longer than any bound below: only a commit can end a wait
    wakeup = Wakeup(context.async_engine.url, min_interval=600, max_interval=600)
    await wakeup.start()
    try:
        yield context, wakeup
    finally:
        await wakeup.stop()
        await context.adispose()


def _publish(context: BoundedContext) -> None:
    with context.transaction(causation_id="a-handled-event"):
        context.integration_events.publish(MeterTickedIntegrationEvent(meter="m-1"))


async def test_a_committed_event_ends_a_long_wait(tmp_path: Path) -> None:
    async with _outbox(tmp_path / "outbox.db") as (context, wakeup):
        waiting = asyncio.ensure_future(wakeup.wait())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        _publish(context)
        await asyncio.wait_for(waiting, 30)


async def test_an_event_committed_between_two_waits_ends_the_next_one_at_once(
    tmp_path: Path,
) -> None:
    async with _outbox(tmp_path / "outbox.db") as (context, wakeup):
        _publish(context)  # while the relay was reading
        await asyncio.wait_for(wakeup.wait(), 30)


async def test_commits_that_leave_nothing_to_send_do_not_end_the_wait(tmp_path: Path) -> None:
    async with _outbox(tmp_path / "outbox.db") as (context, wakeup):
        _publish(context)
        await asyncio.wait_for(wakeup.wait(), 30)
        with context.engine.begin() as connection:  # the relay marks what it sent
            connection.execute(update(outbox).values(published_at=text("CURRENT_TIMESTAMP")))
        waiting = asyncio.ensure_future(wakeup.wait())
        with context.engine.begin() as connection:  # a consumer's effects in the same file
            connection.execute(text("INSERT INTO effects VALUES (1)"))
        await asyncio.sleep(0.1)  # many checks of the change counter
        assert not waiting.done()
        _publish(context)
        await asyncio.wait_for(waiting, 30)
