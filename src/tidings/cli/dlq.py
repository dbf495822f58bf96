"""``tidings dlq``: dead letters, listed, shown, replayed and purged."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from tidings.cli.common import AppArg, JsonOpt, console, errors, then_dispose
from tidings.cli.loading import load_context, require_current_schema

dlq_app = typer.Typer(
    help="Dead letters: messages a consumer could not handle.", no_args_is_help=True
)


def _dead_letters(target: str) -> tuple[Any, Any]:
    from tidings.consumer.consumer import Consumer
    from tidings.transports.memory import MemoryTransport

    context = load_context(target)
    require_current_schema([context])
    # Listing and replaying dead letters never touches the broker.
    return context, Consumer(context, MemoryTransport("memory://dlq-tool"))


@dlq_app.command("list")
def dlq_list(
    target: AppArg,
    limit: Annotated[int, typer.Option(help="Show at most this many.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Dead letters of the context, oldest first, with their reasons."""
    import asyncio

    from rich.table import Table

    context, consumer = _dead_letters(target)
    letters = asyncio.run(then_dispose(context, consumer.dead_letters.list(consumer.group, limit)))
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
    import asyncio

    from rich.table import Table

    context, consumer = _dead_letters(target)
    letter = asyncio.run(then_dispose(context, consumer.dead_letters.get(letter_id)))
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
    import asyncio

    context, consumer = _dead_letters(target)
    succeeded, failed = asyncio.run(then_dispose(context, consumer.replay(letter_ids or None)))
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
    import asyncio

    context, consumer = _dead_letters(target)
    if not yes and not typer.confirm(f"delete every dead letter of {consumer.group}?"):
        raise typer.Exit(1)
    count = asyncio.run(then_dispose(context, consumer.dead_letters.purge(consumer.group)))
    print(json.dumps({"purged": count})) if as_json else console.print(f"purged {count}")
