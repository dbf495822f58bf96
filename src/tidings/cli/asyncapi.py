"""``tidings asyncapi``: the AsyncAPI 3.0.0 document of what contexts exchange."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tidings.cli.common import TargetsArg, errors


def asyncapi(
    targets: TargetsArg,
    broker: Annotated[
        str | None,
        typer.Option(
            help="Broker URL to describe (sqlite:///, amqp://, nats://, redis://, kafka://, "
            "with the transport's options); default: the contexts' shared broker_url. "
            "Passwords are never written."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write the document to this file instead of stdout.")
    ] = None,
    title: Annotated[
        str | None, typer.Option(help="info.title; default: the contexts' names.")
    ] = None,
    api_version: Annotated[
        str, typer.Option(help="info.version: the version of this API description.")
    ] = "1.0.0",
) -> None:
    """Write an AsyncAPI 3.0.0 document (JSON) of the contexts' integration events.

    One channel per event type at the address the transport uses, send
    operations for the publishing contexts, receive operations for the
    consuming ones; each message has its payload schema, CloudEvents
    attributes and correlation id. JSON only (YAML tools read JSON too).

    Exit codes: 0 written; 2 the targets or the broker URL cannot be
    described (the message says why).
    """
    from tidings.cli.loading import load_contexts
    from tidings.contracts.asyncapi import asyncapi_document

    document = asyncapi_document(
        load_contexts(targets), broker_url=broker, title=title, api_version=api_version
    )
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if out is None:
        print(text, end="")
        return
    out.write_text(text, encoding="utf-8")
    errors.print(
        f"[green]✓[/] {out}: {len(document['channels'])} channels, "
        f"{len(document['operations'])} operations",
        soft_wrap=True,
    )
