"""``tidings declare``: create the consuming topology of contexts on their broker.

A subscription keeps what is published after it exists; on a broker that routes by
type (RabbitMQ, NATS) an event published before it is not kept for it. Declaring when
deploying, before the producers go live, makes that impossible to get wrong.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from tidings.cli.common import BrokerOpt, JsonOpt, console
from tidings.cli.loading import load_contexts

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
    as_json: JsonOpt = False,
) -> None:
    """Declare each context's durable subscription to the types its handlers handle.

    Run it when deploying a consuming context, before the producers it listens to go
    live (`tidings consume` and `tidings run` also declare on start, before relaying).
    Idempotent. Contexts without integration event handlers are listed with nothing
    to declare. Exit codes: 0 declared, 2 an error (e.g. the broker is unreachable).
    """
    from tidings.consumer.consumer import Consumer
    from tidings.errors import ConfigurationError
    from tidings.transports.registry import open_transport

    contexts = load_contexts(targets)
    if group is not None and len(contexts) != 1:
        raise ConfigurationError("--group names the subscription of one context only")

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
