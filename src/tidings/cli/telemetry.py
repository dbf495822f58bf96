"""Options of the long-running commands for metrics and tracing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from tidings.cli.common import console
from tidings.observability.prometheus import DEFAULT_HOST
from tidings.observability.tracing import TraceParenting

if TYPE_CHECKING:
    from tidings.context import BoundedContext

MetricsPortOpt = Annotated[
    int | None,
    typer.Option(
        help="Serve tidings' metrics in the Prometheus text format on this port "
        "(http://HOST:PORT/metrics); needs the metrics extra: pip install 'tidings\\[metrics]'.",
    ),
]
MetricsHostOpt = Annotated[str, typer.Option(help="Interface the metrics server binds to.")]
TraceParentingOpt = Annotated[
    TraceParenting,
    typer.Option(
        help="Each event's process span: a child of the span that published it (parent) "
        "or a new trace linked to it (link). Applies with an OpenTelemetry SDK configured.",
    ),
]


def start_metrics(port: int | None, host: str, context: BoundedContext, *, outbox: bool) -> None:
    """Serve the metrics when ``--metrics-port`` is given; ``outbox``: add its gauges."""
    if port is None:
        return
    from tidings.observability.metrics import active_meter, observe_outbox
    from tidings.observability.prometheus import serve_metrics

    serve_metrics(port, host)
    active_meter()  # the instruments (and gauges) exist from the first scrape on
    if outbox:
        observe_outbox(context)
    console.print(f"metrics on http://{host}:{port}/metrics")


__all__ = ["DEFAULT_HOST", "MetricsHostOpt", "MetricsPortOpt", "TraceParentingOpt", "start_metrics"]
