"""What the commands share: argument types, consoles, running until a signal."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

T = TypeVar("T")

console = Console()
errors = Console(stderr=True)

AppArg = Annotated[
    str, typer.Argument(help="The context, as MODULE:ATTRIBUTE (e.g. myapp.catalog:context).")
]
TargetsArg = Annotated[
    list[str],
    typer.Argument(
        help="Contexts (MODULE:ATTRIBUTE) or a tidings.System (e.g. examples.ecommerce.system).",
        show_default=False,
        metavar="TARGET",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
BrokerOpt = Annotated[
    str | None, typer.Option(help="Broker URL; defaults to the context's broker_url.")
]


def run_until_signalled(
    main: Coroutine[Any, Any, None], stop: Callable[[], Awaitable[None]]
) -> None:
    """Run ``main`` until it ends or SIGINT/SIGTERM calls ``stop`` (a graceful stop)."""
    import asyncio  # here, not at import: `tidings --help` need not pay for it
    import gc
    import signal

    async def runner() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, lambda: asyncio.ensure_future(stop()))
        await main

    # The application is loaded: its modules, classes and mappings live as long as the
    # process. Frozen, they are left out of every later collection, which then scans
    # only what the work allocates (shorter pauses in a process that runs for days).
    gc.collect()
    gc.freeze()
    asyncio.run(runner())


async def then_dispose(context: Any, work: Awaitable[T]) -> T:
    """Await ``work``, then close the context's pools inside the same event loop."""
    try:
        return await work
    finally:
        await context.adispose()


def iso(value: datetime | None) -> str | None:
    """ISO 8601 text for JSON output, or None."""
    return None if value is None else value.isoformat()
