"""``tidings declare``: create (or ``--delete``) the consuming topology of contexts on
their broker.

A subscription keeps what is published after it exists; on a broker that routes by
type (RabbitMQ, NATS) an event published before it is not kept for it. Declaring when
deploying, before the producers go live, makes that impossible to get wrong.

Deleting a subscription is how a group's shard count changes (``?shards=N`` is part of
the broker topology): the transport deletes it whole, by the count the broker records.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tidings.cli.common import BrokerOpt, JsonOpt, console
from tidings.cli.loading import load_contexts

if TYPE_CHECKING:
    from tidings.context import BoundedContext
    from tidings.transports.base import Transport

TargetsArg = Annotated[
    list[str],
    typer.Argument(
        help="Contexts or systems, as MODULE:ATTRIBUTE (e.g. myapp.basket:context or "
        "examples.ecommerce.system:system)."
    ),
]


def declare(
    targets: TargetsArg,
    broker: BrokerOpt = None,
    group: Annotated[
        str | None,
        typer.Option(help="Subscription name (one context only); defaults to its name."),
    ] = None,
    delete: Annotated[
        bool,
        typer.Option(
            "--delete",
            help="Delete each context's subscription and the events it holds, instead of "
            "declaring it.",
        ),
    ] = False,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", help="With --delete: do not ask (required with --json or without a terminal)."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Declare each context's durable subscription to the types its handlers handle.

    Run it when deploying a consuming context, before the producers it listens to go
    live (`tidings consume` and `tidings run` also declare on start, before relaying).
    Idempotent. Contexts without integration event handlers are listed with nothing
    to declare.

    With --delete, delete each context's subscription instead (its queues, consumer
    groups or consumers on the broker), with the events it holds: they are lost. A
    sharded one goes whole, whatever the URL's ?shards= says, so that it can be
    declared again with another count. Stop the group's consumers first: it is refused
    while they hold shard leases. Asks for confirmation unless --yes.

    Exit codes: 0 done, 1 not confirmed, 2 an error (e.g. the broker is unreachable).
    """
    from tidings.errors import ConfigurationError

    if yes and not delete:
        raise typer.BadParameter("goes with --delete", param_hint="--yes")
    if delete and not yes and (as_json or not sys.stdin.isatty()):
        raise typer.BadParameter(
            "required with --delete and --json, or without a terminal (it deletes the "
            "subscriptions and the events they hold, and cannot ask)",
            param_hint="--yes",
        )
    contexts = load_contexts(targets)
    if group is not None and len(contexts) != 1:
        raise ConfigurationError("--group names the subscription of one context only")
    if delete:
        _delete(contexts, broker, group, confirmed=yes, as_json=as_json)
    else:
        _declare(contexts, broker, group, as_json=as_json)


def _declare(
    contexts: list[BoundedContext], broker: str | None, group: str | None, *, as_json: bool
) -> None:
    from tidings.consumer.consumer import Consumer
    from tidings.transports.registry import open_transport

    async def run() -> list[dict[str, Any]]:
        declared: list[dict[str, Any]] = []
        for context in contexts:
            try:
                transport = open_transport(broker or context.broker_url)
                consumer = Consumer(context, transport, group=group)
                types = sorted(consumer.subscriptions.event_types)
                entry: dict[str, Any] = {"context": context.name, "event_types": types}
                if types:
                    await consumer.declare()
                    entry |= {"group": consumer.group, "transport": transport.schemes[0]}
                declared.append(entry)
            finally:
                await context.adispose()
        return declared

    import asyncio  # here, not at import: `tidings --help` need not pay for it

    declared = asyncio.run(run())
    if as_json:
        print(json.dumps({"declared": declared}))
        return
    for entry in declared:
        if not entry["event_types"]:
            console.print(f"{entry['context']}: no integration event handlers, nothing to declare")
            continue
        console.print(
            f"[green]✓[/] {entry['context']}: subscription [bold]{entry['group']}[/] "
            f"({entry['transport']}) takes {', '.join(entry['event_types'])}"
        )


def _delete(
    contexts: list[BoundedContext],
    broker: str | None,
    group: str | None,
    *,
    confirmed: bool,
    as_json: bool,
) -> None:
    """Delete each context's subscription: first its shard lease rows (refused while a
    consumer of the group is live), then the broker's topology of it."""
    from tidings.consumer.shard_leases import forget_group
    from tidings.transports.registry import open_transport

    planned: list[tuple[BoundedContext, Transport, str]] = [
        (context, open_transport(broker or context.broker_url), group or context.consumer_group)
        for context in contexts
    ]
    if not confirmed:
        doomed = ", ".join(f"{name} ({transport.schemes[0]})" for _, transport, name in planned)
        if not typer.confirm(
            f"Delete the subscription(s) {doomed} from the broker? The events they hold are lost."
        ):
            raise typer.Exit(1)

    async def run() -> list[dict[str, Any]]:
        deleted: list[dict[str, Any]] = []
        for context, transport, name in planned:
            try:
                await forget_group(context.async_engine, name)
                await transport.connect_to_delete()
                try:
                    await transport.delete_subscription(name)
                finally:
                    await transport.close()
                deleted.append(
                    {"context": context.name, "group": name, "transport": transport.schemes[0]}
                )
            finally:
                await context.adispose()
        return deleted

    import asyncio

    deleted = asyncio.run(run())
    if as_json:
        print(json.dumps({"deleted": deleted}))
        return
    for entry in deleted:
        console.print(
            f"[green]✓[/] {entry['context']}: deleted subscription [bold]{entry['group']}[/] "
            f"({entry['transport']}) and the events it held"
        )
