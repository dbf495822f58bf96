"""Re-sending archived outbox rows, for subscribers added after the fact.

With ``unrouted_only``, only the rows archived as unrouted (no subscription took them
when they were published) are sent; those a subscription takes now lose that mark, so
a second replay does not send them again, and the others keep it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from rich.progress import Progress

from tidings.contracts.envelope import cloud_event_from_row
from tidings.contracts.signing import KeyRing
from tidings.outbox.store import OutboxStore
from tidings.transports.base import Transport

if TYPE_CHECKING:
    from tidings.context import BoundedContext


async def replay_archived(
    context: BoundedContext,
    transport: Transport,
    since: datetime,
    *,
    batch_size: int = 500,
    progress: bool = False,
    unrouted_only: bool = False,
) -> int:
    """Publish archived events created at or after ``since`` again, in position order.

    Returns how many were sent (events no subscription takes now included).
    Events are signed with the context's current key (:meth:`KeyRing.from_environment`)
    if any.
    """
    signing = KeyRing.from_environment(context.name) or None
    store = OutboxStore(context.async_engine)
    sent = 0
    after = 0
    async with transport:
        with Progress(disable=not progress, transient=True) as bar:
            task = bar.add_task("replaying", total=None)
            while rows := await store.archived_since(
                since, batch_size, after, unrouted_only=unrouted_only
            ):
                events = [cloud_event_from_row(cast(Mapping[str, Any], row)) for row in rows]
                if signing is not None:
                    events = [signing.sign(event) for event in events]
                unroutable = await transport.publish_batch(context.name, events)
                if unrouted_only:
                    taken = [
                        row["position"] for index, row in enumerate(rows) if index not in unroutable
                    ]
                    if taken:
                        await store.clear_unrouted(taken)
                after = rows[-1]["position"]
                sent += len(rows)
                bar.update(task, advance=len(rows))
    await context.adispose()
    return sent
