"""OpenTelemetry tracing and metrics of the messaging flow (optional: ``tidings[otel]``).

* :mod:`tidings.observability.tracing`: create, send and process spans following the
  messaging semantic conventions, carried in the CloudEvents ``traceparent``.
* :mod:`tidings.observability.metrics`: counters, histograms and outbox gauges through
  the OpenTelemetry metrics API; :func:`observe_outbox` adds a context to the gauges.
* :mod:`tidings.observability.prometheus`: :func:`serve_metrics`, behind ``--metrics-port``.

Nothing here imports OpenTelemetry until it is used, and nothing is recorded until the
application configures an SDK provider. See docs/tracing.md.
"""

from __future__ import annotations

from tidings.observability.metrics import observe_outbox
from tidings.observability.prometheus import serve_metrics
from tidings.observability.tracing import TraceParenting, current_trace_context

__all__ = ["TraceParenting", "current_trace_context", "observe_outbox", "serve_metrics"]
