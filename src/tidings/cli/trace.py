"""``tidings trace``: what a use case caused in every context, and where it is stuck."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated

import typer
from rich.measure import Measurement
from rich.table import Table

from tidings.cli.common import JsonOpt, console
from tidings.cli.loading import load_contexts, require_current_schema
from tidings.errors import ConfigurationError


class TraceFormat(StrEnum):
    TREE = "tree"
    JSON = "json"
    MERMAID = "mermaid"


def trace(
    targets: Annotated[
        list[str],
        typer.Argument(
            help="The contexts to look in: several MODULE:ATTRIBUTE contexts, or a "
            "tidings.System (e.g. examples.ecommerce.system)."
        ),
    ],
    trace_id: Annotated[
        str | None,
        typer.Option("--id", help="A correlation id, or the id of any event of the use case."),
    ] = None,
    last: Annotated[
        int | None,
        typer.Option("--last", min=1, help="List the N latest use cases with their status."),
    ] = None,
    output: Annotated[
        TraceFormat, typer.Option("--format", help="tree (for people), json or mermaid.")
    ] = TraceFormat.TREE,
    as_json: JsonOpt = False,
) -> None:
    """The causal tree of one use case across contexts, or the latest use cases.

    \b
    tidings trace examples.ecommerce.system --id 0192f...   # correlation or event id
    tidings trace examples.ecommerce.system --last 10
    tidings trace shop.catalog:context shop.basket:context --id ID --format mermaid

    Exit codes: 0 printed; 2 the id is unknown or the targets are wrong.
    """
    from tidings.causality import render, tree

    if (trace_id is None) == (last is None):
        raise ConfigurationError("give either --id ID or --last N")
    if as_json:
        output = TraceFormat.JSON
    contexts = load_contexts(targets)
    try:
        require_current_schema(contexts)
        if last is not None:
            traces = tree.latest(contexts, last)
            if output is TraceFormat.JSON:
                print(json.dumps([render.summary(t) for t in traces]))
                return
            if output is TraceFormat.MERMAID:
                raise ConfigurationError("--format mermaid draws one use case: give --id ID")
            table = Table("context", "started", "events", "status", "gaps", "correlation id")
            for found in traces:
                summary = render.summary(found)
                started = found.started_at
                table.add_row(
                    str(found.origin),
                    "?" if started is None else started.strftime("%Y-%m-%d %H:%M:%S"),
                    str(summary["events"]),
                    render.status_markup(found),
                    str(len(summary["gaps"])),
                    str(found.correlation_id),
                )
            _print_whole(table)
            return
        assert trace_id is not None
        found = tree.trace(contexts, trace_id)
        if output is TraceFormat.JSON:
            print(json.dumps(render.as_json(found)))
        elif output is TraceFormat.MERMAID:
            print(render.as_mermaid(found), end="")
        else:
            console.print(render.as_tree(found))
            for gap in found.gaps:
                console.print(f"[yellow]gap:[/] {gap}")
    finally:
        for context in contexts:
            context.dispose()


def _print_whole(table: Table) -> None:
    """Print ``table`` with every value whole: on a console narrower than its rows (80
    columns when piped) rich would cut the context and status to "orde…" and "comp…";
    the table keeps its own width instead, and a terminal wraps the lines."""
    natural = Measurement.get(console, console.options.update_width(10_000), table).maximum
    if natural > console.width:
        table.width = natural
    console.print(table, crop=False)
