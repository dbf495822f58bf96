"""The overview of one context: outbox, relays, dead letters, consumer lag."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from tidings.application.event_flow import consumed_contracts
from tidings.consumer.dead_letters import DeadLetterStore
from tidings.context import BoundedContext
from tidings.outbox.store import OutboxStatus, OutboxStore
from tidings.redaction import redact

STUCK_SHOWN = 5


@dataclass(frozen=True, slots=True)
class ConsumerLag:
    """Messages the context's consumer group has not committed yet, when the broker says."""

    messages: int | None
    note: str
    """Why ``messages`` is None, or which partitions it covers."""


@dataclass(frozen=True, slots=True)
class ContextOverview:
    """What the overview shows of one context; ``error`` set when it could not be read."""

    name: str
    database: str
    broker: str
    consumer_group: str
    outbox: OutboxStatus | None
    dead_letters: int | None
    lag: ConsumerLag
    error: str | None = None


async def context_overview(context: BoundedContext) -> ContextOverview:
    """Read one context's figures; a database that cannot be reached becomes ``error``."""
    try:
        # No archived count: it reads every archived row (seconds with millions).
        outbox = await OutboxStore(context.async_engine).status(STUCK_SHOWN, count_archived=False)
        letters = await DeadLetterStore(context.async_engine).count(context.consumer_group)
        error = None
    except Exception as exc:
        outbox, letters, error = None, None, redact(f"{type(exc).__name__}: {exc}")
    return ContextOverview(
        name=context.name,
        database=redact(context.database_url),
        broker=redact(context.broker_url),
        consumer_group=context.consumer_group,
        outbox=outbox,
        dead_letters=letters,
        lag=await consumer_lag(context),
        error=error,
    )


async def consumer_lag(context: BoundedContext) -> ConsumerLag:
    """The group's uncommitted messages on a SQLite-file broker; other brokers do not say."""
    if not consumed_contracts(context):
        return ConsumerLag(None, "no consumer: the context handles no integration events")
    scheme = urlsplit(context.broker_url).scheme.lower()
    if scheme != "sqlite":
        return ConsumerLag(None, f"not available on {scheme}:// brokers")
    from tidings.transports.sqlite import SqliteTransport

    transport = SqliteTransport(context.broker_url)
    if not os.path.exists(transport.path):  # connecting would create it
        return ConsumerLag(None, "the broker file does not exist yet")
    try:
        await transport.connect()
        partitions = await transport.partition_status(context.consumer_group)
        backlog = await transport.backlog(context.consumer_group)
    except Exception as exc:
        return ConsumerLag(None, redact(f"broker unreadable: {exc}"))
    finally:
        with contextlib.suppress(Exception):
            await transport.close()
    if not partitions:
        return ConsumerLag(None, "no consumer of this group has joined the broker yet")
    return ConsumerLag(backlog, f"over {len(partitions)} partitions")
