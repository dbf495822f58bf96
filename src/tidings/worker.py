"""Everything one context's process runs: its relay and its consumer, together.

``tidings run APP`` starts this; an asyncio application can embed it instead
(e.g. from a FastAPI lifespan)::

    worker = ContextWorker(context)
    task = asyncio.create_task(worker.run())
    ...
    await worker.stop()
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from tidings.consumer.consumer import Consumer
from tidings.observability.tracing import TraceParenting
from tidings.outbox.relay import Relay

if TYPE_CHECKING:
    from tidings.context import BoundedContext


class ContextWorker:
    """Runs the relay (always) and the consumer (when the context has integration
    event handlers) of ``context`` until :meth:`stop`; ``trace_parenting`` as for
    :class:`~tidings.consumer.Consumer`."""

    def __init__(
        self,
        context: BoundedContext,
        *,
        relay: bool = True,
        consume: bool = True,
        trace_parenting: TraceParenting | str = TraceParenting.PARENT,
    ):
        self.context = context
        self.relay = Relay(context) if relay else None
        self.consumer = (
            Consumer(context, trace_parenting=trace_parenting)
            if consume and context.integration_handlers
            else None
        )

    async def run(self) -> None:
        """Run both until stopped; if one fails, the other is stopped too."""
        tasks = [
            asyncio.create_task(part.run())
            for part in (self.relay, self.consumer)
            if part is not None
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            await self.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.context.adispose()

    async def stop(self) -> None:
        """Stop both gracefully (in-flight batches finish first)."""
        for part in (self.relay, self.consumer):
            if part is not None:
                await part.stop()
