"""``tidings demo``: the reference system, end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tidings.cli.common import console
from tidings.redaction import redact


def demo(
    chaos: Annotated[
        bool, typer.Option(help="Kill random context processes (SIGKILL) and restart them.")
    ] = False,
    users: Annotated[int, typer.Option(help="Users who register.")] = 20,
    products: Annotated[int, typer.Option(help="Products put on sale.")] = 30,
    orders: Annotated[int, typer.Option(help="Orders placed and confirmed.")] = 60,
    price_changes: Annotated[int, typer.Option(help="Price changes during shopping.")] = 30,
    broker: Annotated[
        str | None,
        typer.Option(
            help="Broker URL (amqp://, nats://, redis://, kafka://); default: SQLite file."
        ),
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(help="Database server URL; one database per context is (re)created."),
    ] = None,
    folder: Annotated[
        Path | None, typer.Option(help="Keep the SQLite files and logs here (default: temporary).")
    ] = None,
    chaos_kills: Annotated[
        int, typer.Option(help="With --chaos: keep killing until this many kills happened.")
    ] = 8,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for convergence.")] = 180.0,
) -> None:
    """Run the articles' e-commerce system end to end and check that it converges.

    Seven bounded contexts (identity, catalog, basket, ordering, payments, inventory,
    notifications), each its own process and database, talking only through
    integration events. Exits 0 only if every context converged.
    """
    from tidings.demo.runner import DemoOptions, report, run_demo
    from tidings.demo.workload import WorkloadSize

    options = DemoOptions(
        size=WorkloadSize(
            users=users, products=products, orders=orders, price_changes=price_changes
        ),
        folder=folder,
        broker=broker,
        database=database,
        chaos=chaos,
        chaos_kills=chaos_kills,
        timeout=timeout,
    )
    where = (
        f"{redact(database) if database else 'SQLite files'} + "
        f"{redact(broker) if broker else 'the embedded SQLite broker'}"
    )
    console.print(f"[bold]tidings demo[/] on {where}" + (" with chaos" if chaos else ""))
    result = run_demo(options, console)
    report(result, console)
    if not result.converged:
        raise typer.Exit(1)
