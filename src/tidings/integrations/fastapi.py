"""FastAPI: run contexts' relays and consumers in the app's event loop, a transaction per request.

::

    from tidings.integrations.fastapi import tidings_lifespan, transaction

    app = FastAPI(lifespan=tidings_lifespan(catalog, search))
    CatalogSession = Annotated[AsyncSession, transaction(catalog)]

    @app.post("/products")
    async def add_product(body: NewProduct, session: CatalogSession) -> dict[str, str]:
        await AddProduct(catalog).execute(body.product_id, body.name)
        return {"status": "added"}

The lifespan starts a :class:`~tidings.worker.ContextWorker` (relay, and consumer when
the context has integration event handlers) per context at start-up and stops them
gracefully at shutdown: batches in flight are confirmed and marked first, so nothing
committed is lost, and what is still in an outbox is relayed at the next start.

``transaction(ctx)`` is a dependency that opens ``async with ctx.transaction()`` around
the endpoint and commits **before** the response is sent (FastAPI's
``scope="function"``), so a 2xx answer means the change and its integration events are
committed. An exception in the endpoint rolls everything back. Use it from ``async def``
endpoints; plain functions run in a thread pool, outside the request's transaction.

Needs ``pip install 'tidings[fastapi]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

from tidings.errors import MissingExtraError
from tidings.worker import ContextWorker

try:
    from fastapi import Depends
except ImportError as error:  # pragma: no cover - the extra brings it
    raise MissingExtraError("tidings.integrations.fastapi", "fastapi") from error

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from tidings.context import BoundedContext

__all__ = ["running", "tidings_lifespan", "transaction"]


@asynccontextmanager
async def running(
    *contexts: BoundedContext,
    relay: bool = True,
    consume: bool = True,
    stop_timeout: float = 30.0,
) -> AsyncIterator[list[ContextWorker]]:
    """Run each context's relay and consumer while the block runs; stop them after.

    For applications with a lifespan of their own: ``async with running(catalog):``.
    """
    workers = [ContextWorker(ctx, relay=relay, consume=consume) for ctx in contexts]
    tasks = [asyncio.create_task(worker.run()) for worker in workers]
    try:
        yield workers
    finally:
        for worker in workers:
            await worker.stop()
        done, pending = await asyncio.wait(tasks, timeout=stop_timeout)
        for task in pending:  # a stuck broker call: give up on it, the outbox keeps the rest
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            with contextlib.suppress(asyncio.CancelledError):
                task.result()


def tidings_lifespan(
    *contexts: BoundedContext,
    relay: bool = True,
    consume: bool = True,
    stop_timeout: float = 30.0,
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A FastAPI/Starlette ``lifespan`` running ``contexts`` (see :func:`running`)."""

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        async with running(*contexts, relay=relay, consume=consume, stop_timeout=stop_timeout):
            yield

    return lifespan


def transaction(context: BoundedContext) -> Any:
    """A dependency yielding the request's ``AsyncSession`` in ``context``'s transaction."""

    async def open_transaction() -> AsyncIterator[AsyncSession]:
        async with context.transaction() as session:
            yield session

    open_transaction.__name__ = f"{context.name.replace('-', '_')}_transaction"
    return Depends(open_transaction, scope="function")
