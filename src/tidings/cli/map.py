"""``tidings map``: the event-flow map of one or several contexts, drawn from the code."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from tidings.cli.common import console, errors
from tidings.cli.loading import load_contexts


class MapFormat(StrEnum):
    """The drawings ``tidings map`` writes."""

    MERMAID = "mermaid"
    DOT = "dot"
    HTML = "html"
    JSON = "json"


def map_command(
    targets: Annotated[
        list[str],
        typer.Argument(
            help="Contexts or a System as MODULE:ATTRIBUTE, e.g. examples.ecommerce.system."
        ),
    ],
    output_format: Annotated[
        MapFormat,
        typer.Option("--format", "-f", help="mermaid (default), dot, html or json."),
    ] = MapFormat.MERMAID,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """Draw which context publishes which integration events, who consumes them with
    which handlers, and the domain events and handlers inside each context.

    Read from the code only: publishing handlers name their contracts in
    ``publishes = (...)``; consumers are the integration event handlers. Nothing is
    connected to. Warnings (a contract consumed that no context declares publishing)
    go to stderr.
    """
    from tidings.eventmap import build_map, to_dot, to_html, to_mermaid

    event_map = build_map(load_contexts(targets))
    if output_format is MapFormat.JSON:
        text = json.dumps(event_map.to_json(), indent=2) + "\n"
    elif output_format is MapFormat.DOT:
        text = to_dot(event_map)
    elif output_format is MapFormat.HTML:
        text = to_html(event_map)
    else:
        text = to_mermaid(event_map)
    for warning in event_map.warnings:
        errors.print(f"[yellow]warning:[/] {escape(str(warning))}")
    if out is None:
        print(text, end="")
        return
    out.write_text(text, encoding="utf-8")
    console.print(
        f"[green]✓[/] wrote the map of {len(event_map.contexts)} contexts and "
        f"{len(event_map.contracts)} contracts to {out}"
    )
