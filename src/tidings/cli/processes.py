"""The long-running commands: ``tidings relay``, ``tidings consume`` and ``tidings run``."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from tidings.cli.common import AppArg, BrokerOpt, JsonOpt, console, run_until_signalled
from tidings.cli.loading import load_context
from tidings.cli.telemetry import (
    DEFAULT_HOST,
    MetricsHostOpt,
    MetricsPortOpt,
    TraceParentingOpt,
    start_metrics,
)
from tidings.observability.tracing import TraceParenting
from tidings.redaction import redact

PrefetchOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Deliveries taken from the broker ahead of handling: RabbitMQ, NATS and "
        "Pub/Sub prefetch, Redis and Kafka entries per read, the SQLite broker's "
        "unacknowledged deliveries per partition. Default: the broker URL's option, "
        "else the transport's (RabbitMQ and NATS 256).",
    ),
]
MaxPollIntervalOpt = Annotated[
    float,
    typer.Option(
        min=0.005,
        help="Longest wait between outbox reads while idle (polling doubles up to it). "
        "PostgreSQL wakes the relay with NOTIFY, a SQLite file by its change counter; "
        "MariaDB only polls.",
    ),
]

UnroutedGraceOpt = Annotated[
    float,
    typer.Option(
        min=0.0,
        help="Seconds an event type no subscription takes holds the outbox (for a "
        "consumer starting at the same time) before its events are archived as "
        "unrouted (see `tidings outbox replay --unrouted`). Lower it when every "
        "subscription is declared before the relay starts (`tidings declare`).",
    ),
]
ShardLeaseTtlOpt = Annotated[
    float,
    typer.Option(
        min=0.1,
        help="On a sharded transport (e.g. ?shards=N): seconds before the shards of a "
        "silent consumer process of the group go to the others (each heartbeats every "
        "third of it).",
    ),
]


def _batch_size(value: int) -> int:
    """Refuse a batch size above the relay's and consumer's limit as a usage error (their
    ``ValueError`` would reach the terminal as a traceback)."""
    from tidings.contracts.limits import MAX_BATCH_SIZE  # imports pydantic: not at import

    if value > MAX_BATCH_SIZE:
        raise typer.BadParameter(f"at most {MAX_BATCH_SIZE:,}, got {value}")
    return value


def relay(
    target: AppArg,
    batch_size: Annotated[
        int, typer.Option(min=1, callback=_batch_size, help="Events per broker batch.")
    ] = 500,
    retention: Annotated[
        Literal["delete", "archive"],
        typer.Option(help="What to do with confirmed rows: delete or archive."),
    ] = "delete",
    broker: BrokerOpt = None,
    lease_ttl: Annotated[
        float,
        typer.Option(
            min=0.1,
            help="Seconds before the partitions of a silent relay go to the other relays "
            "(each heartbeats every third of it).",
        ),
    ] = 10.0,
    unrouted_grace: UnroutedGraceOpt = 30.0,
    max_poll_interval: MaxPollIntervalOpt = 1.0,
    metrics_port: MetricsPortOpt = None,
    metrics_host: MetricsHostOpt = DEFAULT_HOST,
) -> None:
    """Forward the context's outbox to its broker until interrupted (SIGINT/SIGTERM).

    Stops gracefully: the batch in flight is confirmed and marked before exit. Events
    the broker routes to no subscription are never counted as sent: see
    --unrouted-grace.
    """
    from tidings.outbox.relay import Relay
    from tidings.transports.registry import open_transport

    context = load_context(target)
    start_metrics(metrics_port, metrics_host, context, outbox=True)
    transport = open_transport(broker) if broker else None
    worker = Relay(
        context,
        transport,
        batch_size=batch_size,
        retention=retention,
        lease_ttl=lease_ttl,
        max_idle_interval=max_poll_interval,
        unrouted_grace=unrouted_grace,
    )
    console.print(
        f"relaying [bold]{context.name}[/] from {redact(context.database_url)} to "
        f"{redact(worker.transport.url)} (Ctrl-C to stop)"
    )
    run_until_signalled(worker.run(), worker.stop)
    stats = worker.stats
    console.print(
        f"stopped after {stats.published} events ({stats.unroutable} archived as unrouted)"
    )


def run_context(
    target: AppArg,
    relay_only: Annotated[bool, typer.Option("--relay-only", help="Do not consume.")] = False,
    batch_size: Annotated[
        int,
        typer.Option(
            min=1,
            callback=_batch_size,
            help="Most events the consumer handles in one transaction.",
        ),
    ] = 200,
    prefetch: PrefetchOpt = None,
    relay_batch_size: Annotated[
        int,
        typer.Option(min=1, callback=_batch_size, help="Events per broker batch of the relay."),
    ] = 500,
    max_poll_interval: MaxPollIntervalOpt = 1.0,
    unrouted_grace: UnroutedGraceOpt = 30.0,
    metrics_port: MetricsPortOpt = None,
    metrics_host: MetricsHostOpt = DEFAULT_HOST,
    trace_parenting: TraceParentingOpt = TraceParenting.PARENT,
    shard_lease_ttl: ShardLeaseTtlOpt = 10.0,
) -> None:
    """Run the context's relay and consumer together until interrupted.

    The simplest way to operate a context: one process forwards its outbox, handles
    the integration events it subscribes to, and completes pending after-commit work.
    The consumer's subscription is declared before the relay starts. `tidings relay`
    and `tidings consume` take the remaining settings.
    """
    from tidings.consumer.consumer import Consumer
    from tidings.outbox.relay import Relay
    from tidings.transports.registry import open_transport, with_prefetch
    from tidings.worker import ContextWorker

    context = load_context(target)
    start_metrics(metrics_port, metrics_host, context, outbox=True)
    relay = Relay(
        context,
        batch_size=relay_batch_size,
        max_idle_interval=max_poll_interval,
        unrouted_grace=unrouted_grace,
    )
    consumer = None
    if not relay_only and context.integration_handlers:
        transport = (
            None
            if prefetch is None
            else open_transport(with_prefetch(context.broker_url, prefetch))
        )
        consumer = Consumer(
            context,
            transport,
            batch_size=batch_size,
            trace_parenting=trace_parenting,
            shard_lease_ttl=shard_lease_ttl,
        )
    worker = ContextWorker(context, relay=relay, consume=not relay_only, consumer=consumer)
    parts = ["relay"] + (["consumer"] if worker.consumer else [])
    console.print(f"running {context.name}: {' + '.join(parts)} (Ctrl-C to stop)")
    run_until_signalled(worker.run(), worker.stop)


def consume(
    target: AppArg,
    broker: BrokerOpt = None,
    group: Annotated[
        str | None, typer.Option(help="Subscription name; defaults to the context's name.")
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option(min=1, callback=_batch_size, help="Most events handled in one transaction."),
    ] = 200,
    prefetch: PrefetchOpt = None,
    max_attempts: Annotated[
        int, typer.Option(min=1, help="Attempts in all before an event is dead-lettered.")
    ] = 6,
    immediate_retries: Annotated[
        int, typer.Option(min=0, help="Retries at once, before backing off.")
    ] = 2,
    retry_initial: Annotated[
        float, typer.Option(min=0, help="Seconds before the first delayed retry (doubling).")
    ] = 0.2,
    retry_max: Annotated[
        float, typer.Option(min=0, help="Longest wait between retries, in seconds.")
    ] = 30.0,
    max_message_bytes: Annotated[
        int, typer.Option(min=1, help="Larger messages are dead-lettered as too_large.")
    ] = 1_048_576,
    unknown_types: Annotated[
        str,
        typer.Option(help="dead_letter (default) or ignore: a type/version no handler can read."),
    ] = "dead_letter",
    metrics_port: MetricsPortOpt = None,
    metrics_host: MetricsHostOpt = DEFAULT_HOST,
    trace_parenting: TraceParentingOpt = TraceParenting.PARENT,
    shard_lease_ttl: ShardLeaseTtlOpt = 10.0,
    status: Annotated[
        bool,
        typer.Option(
            "--status",
            help="Show which consumer process reads which shard of the group (sharded "
            "transports), then exit.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run the context's integration event handlers until interrupted (SIGINT/SIGTERM).

    Each event is handled once (inbox), bad input is dead-lettered, failures are
    retried with backoff; see `tidings dlq --help`. The subscription is declared
    before anything is consumed (as `tidings declare` does). On a sharded transport
    the processes of a group share its shards through leases in the context's
    database: `--status` shows who reads which.
    """
    from tidings.application.retry import RetryPolicy
    from tidings.consumer.consumer import Consumer
    from tidings.errors import ConfigurationError
    from tidings.transports.registry import open_transport, with_prefetch

    if as_json and not status:
        raise typer.BadParameter("goes with --status", param_hint="--json")
    context = load_context(target)
    if status:
        from tidings.cli.shard_status import show_shard_owners

        show_shard_owners(context, group or context.consumer_group, as_json=as_json)
        return
    if not context.integration_handlers:
        raise ConfigurationError(
            f"context {context.name!r} subscribes no IntegrationEventHandler, so there is "
            "nothing to consume; ctx.subscribe(handler) with handle(self, event: "
            "SomeIntegrationEvent)"
        )
    if unknown_types not in ("dead_letter", "ignore"):
        raise typer.BadParameter("dead_letter or ignore", param_hint="--unknown-types")
    if retry_max < retry_initial:
        raise typer.BadParameter("must be at least --retry-initial", param_hint="--retry-max")
    start_metrics(metrics_port, metrics_host, context, outbox=False)
    if prefetch is not None:
        broker = with_prefetch(broker or context.broker_url, prefetch)
    transport = open_transport(broker) if broker else None
    worker = Consumer(
        context,
        transport,
        group=group,
        batch_size=batch_size,
        max_attempts=max_attempts,
        immediate_retries=immediate_retries,
        retry=RetryPolicy(initial_delay=retry_initial, max_delay=retry_max),
        max_message_bytes=max_message_bytes,
        unknown_types=unknown_types,
        trace_parenting=trace_parenting,
        shard_lease_ttl=shard_lease_ttl,
    )
    console.print(
        f"consuming [bold]{', '.join(sorted(worker.subscriptions.event_types))}[/] for "
        f"{worker.group} from {redact(worker.transport.url)} (Ctrl-C to stop)"
    )
    run_until_signalled(worker.run(), worker.stop)
    stats = worker.stats
    console.print(
        f"stopped: {stats.handled} handled, {stats.duplicates} duplicates skipped, "
        f"{stats.dead_lettered} dead-lettered, {stats.skipped} of other types skipped"
    )
