"""W3C trace context for outgoing events, when OpenTelemetry is installed.

tidings never requires OpenTelemetry; with ``tidings[otel]`` installed, the span active
when an integration event is published becomes the event's ``traceparent``, so a trace
follows the use case into every context that reacts to it.
"""

from __future__ import annotations

from collections.abc import Callable

TraceContext = tuple[str | None, str | None]


def _no_tracing() -> TraceContext:
    return None, None


def _otel_trace_context_reader() -> Callable[[], TraceContext]:
    try:
        from opentelemetry import trace
    except ImportError:
        return _no_tracing

    get_current_span = trace.get_current_span

    def read() -> TraceContext:
        context = get_current_span().get_span_context()
        if not context.is_valid:
            return None, None
        parent = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
        state = context.trace_state.to_header() if context.trace_state else None
        return parent, state or None

    return read


current_trace_context: Callable[[], TraceContext] = _otel_trace_context_reader()
