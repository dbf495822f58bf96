"""``tidings outbox``: a context's outbox, inspected and replayed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tidings.cli.common import AppArg, BrokerOpt, JsonOpt, console, errors, iso
from tidings.cli.loading import load_context, require_current_schema

if TYPE_CHECKING:
    from tidings.context import BoundedContext

outbox_app = typer.Typer(help="Inspect and replay a context's outbox.", no_args_is_help=True)


@outbox_app.command("status")
def outbox_status(target: AppArg, as_json: JsonOpt = False) -> None:
    """Pending events, relay lag, stuck rows with their last error, publish rate."""
    import asyncio

    from rich.table import Table

    from tidings.outbox.store import OutboxStore

    context = load_context(target)
    require_current_schema([context])

    async def read() -> Any:
        try:
            return await OutboxStore(context.async_engine).status()
        finally:
            await context.adispose()

    status = asyncio.run(read())
    if as_json:
        print(
            json.dumps(
                {
                    "context": context.name,
                    "pending": status.pending,
                    "lag_seconds": round(status.lag_seconds, 3),
                    "oldest_pending_at": iso(status.oldest_pending_at),
                    "archived": status.archived,
                    "unrouted": status.unrouted,
                    "publish_rate_per_s": status.publish_rate_per_s,
                    "relay_owner": status.relay_owner,
                    "relay_lease_expires_at": iso(status.relay_lease_expires_at),
                    "relay_lease_expired": status.relay_lease_expired,
                    "partitions": status.partitions,
                    "relays": [
                        {
                            "owner": relay.owner,
                            "partitions": list(relay.partitions),
                            "expires_at": iso(relay.expires_at),
                            "expired": relay.expired,
                            "rate_per_s": relay.rate_per_s,
                            "published_total": relay.published_total,
                        }
                        for relay in status.relays
                    ],
                    "stuck": [
                        {
                            "position": row.position,
                            "event_id": row.event_id,
                            "event_type": row.event_type,
                            "attempts": row.attempts,
                            "last_error": row.last_error,
                            "created_at": iso(row.created_at),
                        }
                        for row in status.stuck
                    ],
                }
            )
        )
        return
    table = Table(title=f"outbox of {context.name}", show_header=False)
    table.add_row("pending", str(status.pending))
    table.add_row("lag", f"{status.lag_seconds:.3f} s")
    table.add_row("archived", str(status.archived))
    table.add_row("unrouted (archived)", str(status.unrouted))
    rate = status.publish_rate_per_s
    table.add_row("publish rate", "no relay yet" if rate is None else f"{rate:.1f} events/s")
    relay = status.relay_owner or "none"
    if status.relay_lease_expired:
        relay = f"{relay} [red]STALE: lease expired {iso(status.relay_lease_expires_at)}[/]"
    table.add_row("relay", relay)
    table.add_row(
        "partitions", "not created yet" if status.partitions is None else str(status.partitions)
    )
    console.print(table)
    if status.relays:
        relays = Table(title="relays (partitions per owner)")
        for column in ("owner", "partitions", "rate", "published", "lease"):
            relays.add_column(column)
        for member in status.relays:
            lease = f"[red]expired {iso(member.expires_at)}[/]" if member.expired else "live"
            relays.add_row(
                member.owner,
                _ranges(member.partitions),
                f"{member.rate_per_s:.1f}/s",
                str(member.published_total),
                lease,
            )
        console.print(relays)
    if status.stuck:
        stuck = Table(title="stuck rows (failed attempts)")
        for column in ("position", "type", "attempts", "last error"):
            stuck.add_column(column)
        for row in status.stuck:
            stuck.add_row(
                str(row.position), row.event_type, str(row.attempts), row.last_error or ""
            )
        console.print(stuck)


@outbox_app.command("replay")
def outbox_replay(
    target: AppArg,
    since: Annotated[
        str | None,
        typer.Option(
            help="Re-send archived events created at or after this ISO 8601 time "
            "(UTC unless it has an offset), e.g. 2026-11-23T10:00:00.5+01:00. "
            "Required unless --unrouted."
        ),
    ] = None,
    unrouted: Annotated[
        bool,
        typer.Option(
            "--unrouted",
            help="Only the events archived as unrouted (no subscription took them when "
            "published, whatever the retention); those taken now lose the mark.",
        ),
    ] = False,
    broker: BrokerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-send archived events (retention=archive, or unrouted), e.g. to a new subscriber.

    Consumers that already handled them skip them through their inbox. Declare the new
    subscriber first (`tidings declare`).
    """
    import asyncio

    from tidings.outbox.replay import replay_archived
    from tidings.transports.registry import open_transport

    if since is None and not unrouted:
        raise typer.BadParameter("give --since, or --unrouted", param_hint="--since")
    context = load_context(target)
    require_current_schema([context])
    try:
        parsed = datetime.fromisoformat(since) if since else datetime(1970, 1, 1)
    except ValueError as error:
        raise typer.BadParameter(
            f"{since!r} is not an ISO 8601 time", param_hint="--since"
        ) from error
    moment = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    transport = open_transport(broker or context.broker_url)
    count = asyncio.run(
        replay_archived(context, transport, moment, progress=not as_json, unrouted_only=unrouted)
    )
    if as_json:
        print(json.dumps({"context": context.name, "replayed": count}))
    else:
        console.print(f"[green]✓[/] re-sent {count} archived events of {context.name}")


def _ranges(numbers: tuple[int, ...]) -> str:
    """0-3,7,9-10: partition numbers, readable (they are sorted)."""
    spans: list[list[int]] = []
    for number in numbers:
        if spans and spans[-1][1] == number - 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    text = ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
    return f"{len(numbers)}: {text}" if numbers else "none"


@outbox_app.command("partitions")
def outbox_partitions(
    target: AppArg,
    count: Annotated[
        int | None,
        typer.Argument(
            min=1,
            max=4096,
            help="The new partition count; omit it to show the current one. Refused "
            "while relays hold partitions: stop them first.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show or change how many relay partitions the outbox has (see docs/operations.md).

    Rows keep their slot (crc32 of the key modulo 4096); a row's partition is its slot
    modulo the count, so any count from 1 to 4096 works and no row is rewritten.
    """
    from tidings.outbox.partitions import partition_count

    context = load_context(target)
    require_current_schema([context])
    if count is not None:
        change_partitions(context, count, as_json=as_json)
        return
    with context.engine.connect() as connection:
        current = partition_count(connection, context.name)
    if as_json:
        print(json.dumps({"context": context.name, "partitions": current or None}))
    elif current:
        console.print(f"outbox of {context.name}: {current} relay partitions")
    else:
        console.print(
            f"outbox of {context.name}: no partitions yet (the first relay creates 16; "
            "`tidings db init APP --partitions N` or this command with N chooses)"
        )


def change_partitions(context: BoundedContext, count: int, *, as_json: bool = False) -> None:
    """Set the partition count of ``context``'s outbox; exit 1 while relays hold some."""
    from tidings.errors import PartitionsInUseError
    from tidings.outbox.partitions import set_partition_count

    try:
        with context.engine.begin() as connection:
            before = set_partition_count(connection, context.name, count)
    except PartitionsInUseError as error:
        errors.print(f"[red]PartitionsInUseError[/]: {error}")
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps({"context": context.name, "partitions": count, "before": before}))
    else:
        console.print(f"[green]✓[/] outbox of {context.name}: {before} → {count} relay partitions")
