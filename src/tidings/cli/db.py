"""``tidings db``: the tidings tables in a context's database."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from tidings.cli.common import AppArg, console
from tidings.cli.loading import load_context, require_current_schema
from tidings.redaction import redact

db_app = typer.Typer(help="The tidings tables in a context's database.", no_args_is_help=True)


@db_app.command("init")
def db_init(
    target: AppArg,
    partitions: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=4096,
            help="Relay partitions of the outbox: at most this many relay processes share "
            "it with per-key order (default 16; change later with `tidings outbox "
            "partitions`).",
        ),
    ] = None,
) -> None:
    """Create the tidings tables at the latest schema version (upgrading older ones)."""
    from tidings.outbox.partitions import DEFAULT_PARTITIONS, ensure_partitions

    context = load_context(target)
    tables = context.create_tables()
    with context.engine.begin() as connection:
        count = ensure_partitions(connection, context.name, partitions or DEFAULT_PARTITIONS)
    console.print(f"[green]✓[/] {redact(context.database_url)}: {', '.join(tables)}")
    if partitions is not None and count != partitions:
        from tidings.cli.outbox import change_partitions

        change_partitions(context, partitions)
    else:
        console.print(f"  outbox of {context.name}: {count} relay partitions")


@db_app.command("upgrade")
def db_upgrade(target: AppArg) -> None:
    """Apply the missing tidings schema migrations, in order; running it again does nothing.

    Run it when deploying a new tidings version, before its relays and consumers start
    (they refuse an outdated schema). A database without tidings tables gets them all.
    """
    context = load_context(target)
    from tidings.persistence.migrations import upgrade

    before, after = upgrade(context.engine)
    if before == after:
        console.print(
            f"[green]✓[/] {redact(context.database_url)}: schema version {after}, up to date"
        )
    else:
        was = "no tidings tables" if before == 0 else f"version {before}"
        console.print(f"[green]✓[/] {redact(context.database_url)}: {was} → version {after}")


@db_app.command("purge-records")
def db_purge_records(
    target: AppArg,
    older_than_days: Annotated[
        float | None,
        typer.Option(
            "--older-than-days", help="Age in days (default: the context's causal_retention)."
        ),
    ] = None,
) -> None:
    """Delete the causal records (tidings trace) older than the context's retention."""
    context = load_context(target)
    require_current_schema([context])
    older = None if older_than_days is None else timedelta(days=older_than_days)
    deleted = context.purge_causal_records(older)
    console.print(f"[green]✓[/] {context.name}: deleted {deleted} causal records")
