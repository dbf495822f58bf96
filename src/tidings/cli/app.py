"""The ``tidings`` command."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

import tidings
from tidings.cli.loading import load_context
from tidings.errors import TidingsError
from tidings.redaction import redact

app = typer.Typer(
    name="tidings",
    help="Domain events, integration events, a transactional outbox, relay and inbox.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The tidings tables in a context's database.", no_args_is_help=True)
outbox_app = typer.Typer(help="Inspect and replay a context's outbox.", no_args_is_help=True)
dlq_app = typer.Typer(
    help="Dead letters: messages a consumer could not handle.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(outbox_app, name="outbox")
app.add_typer(dlq_app, name="dlq")

console = Console()
errors = Console(stderr=True)

AppArg = Annotated[
    str, typer.Argument(help="The context, as MODULE:ATTRIBUTE (e.g. myapp.catalog:context).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
BrokerOpt = Annotated[
    str | None, typer.Option(help="Broker URL; defaults to the context's broker_url.")
]


def _version(value: bool) -> None:
    if value:
        console.print(f"tidings {tidings.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@db_app.command("init")
def db_init(target: AppArg) -> None:
    """Create the outbox, publication log, inbox and relay tables if missing."""
    context = load_context(target)
    tables = context.create_tables()
    console.print(f"[green]✓[/] {redact(context.database_url)}: {', '.join(tables)}")


@app.command()
def lint(target: AppArg) -> None:
    """Warn about domain event names that are not specific past-tense facts.

    Checks every DomainEvent subclass imported by the application. Exits with 1 when
    there are warnings, so it can guard a CI pipeline.
    """
    from tidings.domain.events import DomainEvent
    from tidings.naming import check_domain_event_name

    load_context(target)
    warnings = [
        warning
        for cls in sorted(_all_subclasses(DomainEvent), key=lambda c: c.__qualname__)
        for warning in check_domain_event_name(cls.__name__)
    ]
    for warning in warnings:
        console.print(f"[yellow]{warning.name}[/] ({warning.rule}): {warning.advice}")
    if warnings:
        raise typer.Exit(1)
    console.print("[green]✓[/] domain event names read as specific facts")


def _all_subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    pending: list[type] = [cls]
    while pending:
        subclasses: list[type] = pending.pop().__subclasses__()
        for sub in subclasses:
            if sub not in found:
                found.add(sub)
                pending.append(sub)
    return found


@app.command()
def relay(
    target: AppArg,
    batch_size: Annotated[int, typer.Option(help="Events per broker batch.")] = 500,
    retention: Annotated[
        str, typer.Option(help="What to do with confirmed rows: delete or archive.")
    ] = "delete",
    broker: BrokerOpt = None,
    lease_ttl: Annotated[
        float,
        typer.Option(help="Seconds before a standby relay takes over from a silent one."),
    ] = 10.0,
) -> None:
    """Forward the context's outbox to its broker until interrupted (SIGINT/SIGTERM).

    Stops gracefully: the batch in flight is confirmed and marked before exit.
    """
    from tidings.outbox.relay import Relay
    from tidings.transports.registry import open_transport

    context = load_context(target)
    transport = open_transport(broker) if broker else None
    worker = Relay(
        context, transport, batch_size=batch_size, retention=retention, lease_ttl=lease_ttl
    )
    console.print(
        f"relaying [bold]{context.name}[/] from {redact(context.database_url)} to "
        f"{redact(worker.transport.url)} (Ctrl-C to stop)"
    )
    _run_until_signalled(worker.run(), worker.stop)
    console.print(f"stopped after {worker.stats.published} events")


def _run_until_signalled(main: Any, stop: Any) -> None:
    async def runner() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, lambda: asyncio.ensure_future(stop()))
        await main

    asyncio.run(runner())


@app.command()
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
    where = redact(f"{database or 'SQLite files'} + {broker or 'the embedded SQLite broker'}")
    console.print(f"[bold]tidings demo[/] on {where}" + (" with chaos" if chaos else ""))
    result = run_demo(options, console)
    report(result, console)
    if not result.converged:
        raise typer.Exit(1)


@app.command("run")
def run_context(
    target: AppArg,
    relay_only: Annotated[bool, typer.Option("--relay-only", help="Do not consume.")] = False,
) -> None:
    """Run the context's relay and consumer together until interrupted.

    The simplest way to operate a context: one process forwards its outbox, handles
    the integration events it subscribes to, and completes pending after-commit work.
    """
    from tidings.worker import ContextWorker

    context = load_context(target)
    worker = ContextWorker(context, consume=not relay_only)
    parts = ["relay"] + (["consumer"] if worker.consumer else [])
    console.print(f"running {context.name}: {' + '.join(parts)} (Ctrl-C to stop)")
    _run_until_signalled(worker.run(), worker.stop)


@app.command()
def consume(
    target: AppArg,
    broker: BrokerOpt = None,
    group: Annotated[
        str | None, typer.Option(help="Subscription name; defaults to the context's name.")
    ] = None,
) -> None:
    """Run the context's integration event handlers until interrupted (SIGINT/SIGTERM).

    Each event is handled once (inbox), bad input is dead-lettered, failures are
    retried with backoff; see `tidings dlq --help`.
    """
    from tidings.consumer.consumer import Consumer
    from tidings.transports.registry import open_transport

    context = load_context(target)
    transport = open_transport(broker) if broker else None
    worker = Consumer(context, transport, group=group)
    console.print(
        f"consuming [bold]{', '.join(sorted(worker.subscriptions.event_types))}[/] for "
        f"{worker.group} from {redact(worker.transport.url)} (Ctrl-C to stop)"
    )
    _run_until_signalled(worker.run(), worker.stop)
    stats = worker.stats
    console.print(
        f"stopped: {stats.handled} handled, {stats.duplicates} duplicates skipped, "
        f"{stats.dead_lettered} dead-lettered"
    )


def _dead_letters(target: str) -> tuple[Any, Any]:
    from tidings.consumer.consumer import Consumer
    from tidings.transports.memory import MemoryTransport

    context = load_context(target)
    # Listing and replaying dead letters never touches the broker.
    return context, Consumer(context, MemoryTransport("memory://dlq-tool"))


@dlq_app.command("list")
def dlq_list(
    target: AppArg,
    limit: Annotated[int, typer.Option(help="Show at most this many.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Dead letters of the context, oldest first, with their reasons."""
    context, consumer = _dead_letters(target)
    letters = asyncio.run(_then_dispose(context, consumer.dead_letters.list(consumer.group, limit)))
    if as_json:
        print(json.dumps([letter.to_json() for letter in letters]))
        return
    table = Table(title=f"dead letters of {consumer.group}")
    for column in ("id", "reason", "type", "attempts", "last failure", "error"):
        table.add_column(column)
    for letter in letters:
        table.add_row(
            letter.letter_id,
            letter.reason,
            f"{letter.event_type or '?'} v{letter.event_version or '?'}",
            str(letter.attempts),
            letter.last_failed_at.isoformat(timespec="seconds"),
            f"{letter.error_type}: {(letter.error_message or '')[:80]}",
        )
    console.print(table if letters else "[green]no dead letters[/]")


@dlq_app.command("show")
def dlq_show(
    target: AppArg,
    letter_id: Annotated[str, typer.Argument(help="The dead letter's id (from `dlq list`).")],
    as_json: JsonOpt = False,
) -> None:
    """One dead letter in full: reason, error, headers and body."""
    context, consumer = _dead_letters(target)
    letter = asyncio.run(_then_dispose(context, consumer.dead_letters.get(letter_id)))
    if letter is None:
        errors.print(f"[red]error:[/] no dead letter {letter_id}")
        raise typer.Exit(1)
    details = letter.to_json(with_body=True)
    if as_json:
        print(json.dumps(details))
        return
    table = Table(show_header=False, title=f"dead letter {letter_id}")
    for key, value in details.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    console.print(table)


@dlq_app.command("replay")
def dlq_replay(
    target: AppArg,
    letter_ids: Annotated[
        list[str] | None, typer.Argument(help="Dead letters to replay; all when omitted.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run dead letters through the handlers again (after fixing them).

    The inbox still guards: an event already handled is not handled twice.
    Replayed letters are removed; failing ones stay with the new error.
    """
    context, consumer = _dead_letters(target)
    succeeded, failed = asyncio.run(_then_dispose(context, consumer.replay(letter_ids or None)))
    if as_json:
        print(json.dumps({"replayed": succeeded, "failed": failed}))
    else:
        console.print(f"replayed {succeeded}, still failing {failed}")
    if failed:
        raise typer.Exit(1)


@dlq_app.command("purge")
def dlq_purge(
    target: AppArg,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete every dead letter of the context."""
    context, consumer = _dead_letters(target)
    if not yes and not typer.confirm(f"delete every dead letter of {consumer.group}?"):
        raise typer.Exit(1)
    count = asyncio.run(_then_dispose(context, consumer.dead_letters.purge(consumer.group)))
    print(json.dumps({"purged": count})) if as_json else console.print(f"purged {count}")


async def _then_dispose(context: Any, work: Any) -> Any:
    try:
        return await work
    finally:
        await context.adispose()


@outbox_app.command("status")
def outbox_status(target: AppArg, as_json: JsonOpt = False) -> None:
    """Pending events, relay lag, stuck rows with their last error, publish rate."""
    from tidings.outbox.store import OutboxStore

    context = load_context(target)

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
                    "oldest_pending_at": _iso(status.oldest_pending_at),
                    "archived": status.archived,
                    "publish_rate_per_s": status.publish_rate_per_s,
                    "relay_owner": status.relay_owner,
                    "relay_lease_expires_at": _iso(status.relay_lease_expires_at),
                    "stuck": [
                        {
                            "position": row.position,
                            "event_id": row.event_id,
                            "event_type": row.event_type,
                            "attempts": row.attempts,
                            "last_error": row.last_error,
                            "created_at": _iso(row.created_at),
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
    rate = status.publish_rate_per_s
    table.add_row("publish rate", "no relay yet" if rate is None else f"{rate:.1f} events/s")
    table.add_row("relay", status.relay_owner or "none")
    console.print(table)
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
        str,
        typer.Option(
            help="Re-send archived events created at or after this ISO 8601 time "
            "(UTC unless it has an offset), e.g. 2026-11-23T10:00:00.5+01:00."
        ),
    ],
    broker: BrokerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-send archived events (retention=archive), e.g. to a newly added subscriber.

    Consumers that already handled them skip them through their inbox.
    """
    from tidings.outbox.replay import replay_archived
    from tidings.transports.registry import open_transport

    context = load_context(target)
    try:
        parsed = datetime.fromisoformat(since)
    except ValueError as error:
        raise typer.BadParameter(
            f"{since!r} is not an ISO 8601 time", param_hint="--since"
        ) from error
    moment = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    transport = open_transport(broker or context.broker_url)
    count = asyncio.run(replay_archived(context, transport, moment, progress=not as_json))
    if as_json:
        print(json.dumps({"context": context.name, "replayed": count}))
    else:
        console.print(f"[green]✓[/] re-sent {count} archived events of {context.name}")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def main() -> None:
    """Entry point of the ``tidings`` console script."""
    try:
        app()
    except TidingsError as error:
        errors.print(f"[red]error:[/] {error}")
        sys.exit(2)
