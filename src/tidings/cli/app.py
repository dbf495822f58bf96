"""The ``tidings`` command: the root, its options, and where each command lives."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer
from rich.markup import escape

import tidings
from tidings.cli import asyncapi, declare, demo, lint, processes, trace
from tidings.cli.common import console, errors
from tidings.cli.contracts import app as contracts_app
from tidings.cli.dashboard import dashboard_command
from tidings.cli.db import db_app
from tidings.cli.dlq import dlq_app
from tidings.cli.map import map_command
from tidings.cli.outbox import outbox_app
from tidings.errors import TidingsError

app = typer.Typer(
    name="tidings",
    help="Domain events, integration events, a transactional outbox, relay and inbox.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(db_app, name="db")
app.add_typer(outbox_app, name="outbox")
app.add_typer(dlq_app, name="dlq")
app.add_typer(contracts_app, name="contracts")
app.command()(lint.lint)
app.command()(processes.relay)
app.command()(demo.demo)
app.command("run")(processes.run_context)
app.command()(processes.consume)
app.command("map")(map_command)
app.command()(trace.trace)
app.command()(asyncapi.asyncapi)
app.command()(declare.declare)
app.command("dashboard")(dashboard_command)


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


def main() -> None:
    """Entry point of the ``tidings`` console script."""
    try:
        app()
    except TidingsError as error:
        errors.print(f"[red]error:[/] {escape(str(error))}", soft_wrap=True)
        sys.exit(2)
