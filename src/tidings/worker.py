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
import contextlib
import logging
from typing import TYPE_CHECKING

from tidings.consumer.consumer import Consumer
from tidings.observability.tracing import TraceParenting
from tidings.outbox.relay import Relay
from tidings.transports.base import TransportError

if TYPE_CHECKING:
    from tidings.context import BoundedContext

logger = logging.getLogger("tidings.worker")


class ContextWorker:
    """Runs the relay (always) and the consumer (when the context has integration
    event handlers) of ``context`` until :meth:`stop`; ``trace_parenting`` as for
    :class:`~tidings.consumer.Consumer`.

    ``relay`` and ``consumer`` may be given ready-made, with settings of their own
    (``Relay(context, batch_size=...)``, ``Consumer(context, batch_size=...)``); by
    default each is built with its defaults. ``relay=False`` / ``consume=False`` leave
    one out.
    """

    def __init__(
        self,
        context: BoundedContext,
        *,
        relay: bool | Relay = True,
        consume: bool = True,
        trace_parenting: TraceParenting | str = TraceParenting.PARENT,
        consumer: Consumer | None = None,
    ):
        self.context = context
        self.relay = relay if isinstance(relay, Relay) else Relay(context) if relay else None
        self.consumer = (
            (consumer or Consumer(context, trace_parenting=trace_parenting))
            if consume and context.integration_handlers
            else None
        )
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Run both until stopped; if one fails, the other is stopped too.

        The consumer's subscription is declared first, before the relay sends anything:
        this process's own events reach its own handlers even on a broker that keeps
        only what is published after a subscription exists.
        """
        if self.consumer is not None:
            await self._declare(self.consumer)
        if self._stopping.is_set():  # stopped while declaring: start nothing
            await self.context.adispose()
            return
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

    async def _declare(self, consumer: Consumer) -> None:
        """Declare the consumer's subscription, waiting out a broker that is not up yet."""
        attempt = 0
        while not self._stopping.is_set():
            try:
                await consumer.declare()
                return
            except TransportError as error:
                attempt += 1
                delay = consumer.retry.delay(attempt)
                logger.warning(
                    "%s: cannot declare the subscription yet (%s); retrying in %.2fs",
                    self.context.name,
                    error,
                    delay,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)

    async def stop(self) -> None:
        """Stop both gracefully (in-flight batches finish first)."""
        self._stopping.set()
        for part in (self.relay, self.consumer):
            if part is not None:
                await part.stop()
