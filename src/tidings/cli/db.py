"""``tidings db``: the tidings tables in a context's database."""

from __future__ import annotations

import typer

from tidings.cli.common import AppArg, console
from tidings.cli.loading import load_context

db_app = typer.Typer(help="The tidings tables in a context's database.", no_args_is_help=True)


@db_app.command("init")
def db_init(target: AppArg) -> None:
    """Create the outbox, publication log, inbox and relay tables if missing."""
    context = load_context(target)
    tables = context.create_tables()
    console.print(f"[green]✓[/] {context.database_url}: {', '.join(tables)}")
