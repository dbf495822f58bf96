"""OpenTelemetry spans of the messaging flow: create, send and process.

tidings never requires OpenTelemetry. With the API installed (``tidings[otel]``) and an
SDK ``TracerProvider`` configured by the application, it follows the messaging semantic
conventions:

* ``create {type}`` (PRODUCER): one per integration event published in a transaction,
  a child of the span current at publish time; its context is the event's
  ``traceparent`` (stored in the outbox row, sent as the CloudEvents extension).
* ``send {type}`` (PRODUCER): one per relay batch (one per 128 events of a larger batch:
  the SDK keeps no more links per span by default), linked to each event's create span;
  when every event it links belongs to one trace it is also a child of the first
  event's create span, otherwise it starts a trace of its own.
* ``process {type}`` (CONSUMER): one per event handled, a child of the create span the
  CloudEvent carries (or a new trace linked to it, ``trace_parenting="link"``), current
  while the event's handlers run, so what they publish continues the trace.

Without an SDK nothing is created: each call site asks :func:`active_tracer`, which
answers ``None`` after one check of the global tracer provider, and then only passes on
the current span's context when one is valid (an application's own instrumentation).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

# The API modules, imported on first use (``import tidings`` does not pay for them).
_trace: Any = None
_context: Any = None
_missing = False

TraceContext = tuple[str | None, str | None]

# Attribute names of the OpenTelemetry messaging semantic conventions.
SYSTEM = "messaging.system"
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
DESTINATION = "messaging.destination.name"
MESSAGE_ID = "messaging.message.id"
CONVERSATION_ID = "messaging.message.conversation_id"
CONSUMER_GROUP = "messaging.consumer.group.name"
BATCH_COUNT = "messaging.batch.message_count"

# Well-known messaging.system values; other brokers are named by their URL scheme.
_SYSTEMS = {"amqp": "rabbitmq", "amqps": "rabbitmq", "rediss": "redis"}

_tracer: Any = None  # the tracer, once an SDK provider is configured


def _api() -> Any:
    """The ``opentelemetry.trace`` module, or None when the otel extra is missing."""
    global _trace, _context, _missing
    if _trace is None and not _missing:
        try:
            from opentelemetry import context, trace
        except ImportError:
            _missing = True
            return None
        _trace, _context = trace, context
        trace.get_tracer_provider()  # loads a provider named by OTEL_PYTHON_TRACER_PROVIDER
    return _trace


class TraceParenting(StrEnum):
    """How a consumer's process span relates to the create span an event carries."""

    PARENT = "parent"  # child of it: one trace from the use case to every side effect
    LINK = "link"  # a trace of its own, linked to it


def messaging_system(broker_url: str) -> str:
    """The ``messaging.system`` of a broker URL: ``rabbitmq``, ``kafka``, ``nats``..."""
    scheme = urlsplit(broker_url).scheme.lower()
    return _SYSTEMS.get(scheme, scheme)


def active_tracer() -> Any:
    """tidings' tracer, or None when OpenTelemetry or an SDK provider is missing.

    A provider is set once per process and never unset, so the answer is cached once
    positive. Until then it reads the API's global: ``get_tracer_provider()`` looks up
    an environment variable on each call while no provider is set (microseconds).
    """
    global _tracer
    if _tracer is not None:
        return _tracer
    if _api() is None:
        return None
    provider = getattr(_trace, "_TRACER_PROVIDER", _trace)
    if provider is None:
        return None
    if provider is _trace:  # an API without that global: ask it
        provider = _trace.get_tracer_provider()
    if isinstance(provider, _trace.ProxyTracerProvider | _trace.NoOpTracerProvider):
        return None
    _tracer = provider.get_tracer("tidings")
    return _tracer


def current_trace_context() -> TraceContext:
    """The W3C ``traceparent`` and ``tracestate`` of the current span, if it is valid."""
    if _api() is None:
        return None, None
    return format_trace_context(_trace.get_current_span().get_span_context())


def format_trace_context(span_context: Any) -> TraceContext:
    """``(traceparent, tracestate)`` headers of an OpenTelemetry ``SpanContext``."""
    if not span_context.is_valid:
        return None, None
    parent = (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
        f"{span_context.trace_flags:02x}"
    )
    state = span_context.trace_state.to_header() if span_context.trace_state else None
    return parent, state or None


def parse_trace_context(traceparent: str | None, tracestate: str | None = None) -> Any:
    """The remote ``SpanContext`` of W3C headers, or None when absent or malformed."""
    if not traceparent or _api() is None:
        return None
    # version "-" trace-id (32 hex) "-" parent-id (16 hex) "-" flags (2 hex) [ "-" ... ]:
    # sliced at fixed places, cheaper than splitting (two parses per event when tracing).
    if (
        len(traceparent) < 55
        or traceparent[2] != "-"
        or traceparent[35] != "-"
        or traceparent[52] != "-"
        or traceparent.startswith("ff")
    ):
        return None
    try:
        trace_id = int(traceparent[3:35], 16)
        span_id = int(traceparent[36:52], 16)
        flags = int(traceparent[53:55], 16)
    except ValueError:
        return None
    state = _trace.TraceState.from_header([tracestate]) if tracestate else None
    span_context = _trace.SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=_trace.TraceFlags(flags), trace_state=state
    )
    return span_context if span_context.is_valid else None


def create_span(system: str, event: Any, correlation_id: str | None) -> TraceContext:
    """Open and close the ``create`` span of an integration event; the context it carries."""
    tracer = active_tracer()
    if tracer is None:
        return current_trace_context()
    event_type = event.event_type
    attributes = {
        SYSTEM: system,
        OPERATION_TYPE: "create",
        OPERATION_NAME: "create",
        DESTINATION: event_type,
        MESSAGE_ID: str(event.event_id),
    }
    if correlation_id:
        attributes[CONVERSATION_ID] = correlation_id
    span = tracer.start_span(
        f"create {event_type}", kind=_trace.SpanKind.PRODUCER, attributes=attributes
    )
    span.end()
    return format_trace_context(span.get_span_context())


# The OpenTelemetry SDK's default limit of links per span (OTEL_SPAN_LINK_COUNT_LIMIT):
# it drops the links past it, so a relay batch of 500 events gets one send span per 128.
LINKS_PER_SEND_SPAN = 128


def _start_send_span(tracer: Any, system: str, rows: Sequence[Any]) -> Any:
    links = []
    traces = set()
    types = set()
    for row in rows:
        types.add(row["event_type"])
        span_context = parse_trace_context(row["traceparent"], row["tracestate"])
        if span_context is not None:
            links.append(_trace.Link(span_context))
            traces.add(span_context.trace_id)
    destination = types.pop() if len(types) == 1 else None
    attributes: dict[str, Any] = {
        SYSTEM: system,
        OPERATION_TYPE: "send",
        OPERATION_NAME: "send",
        BATCH_COUNT: len(rows),
    }
    if destination is not None:
        attributes[DESTINATION] = destination
    # One trace among the events (the common case at low load): the send joins it.
    # Otherwise it is a root: a span has one parent, and the links name every event's
    # create span.
    parent = (
        _trace.set_span_in_context(_trace.NonRecordingSpan(links[0].context))
        if len(traces) == 1 and len(links) == len(rows)
        else _context.Context()
    )
    return tracer.start_span(
        f"send {destination}" if destination else "send",
        context=parent,
        kind=_trace.SpanKind.PRODUCER,
        attributes=attributes,
        links=links,
    )


@contextlib.contextmanager
def _send_spans(system: str, rows: Sequence[Any]) -> Iterator[None]:
    tracer = _tracer
    spans = [
        _start_send_span(tracer, system, rows[start : start + LINKS_PER_SEND_SPAN])
        for start in range(0, len(rows), LINKS_PER_SEND_SPAN)
    ]
    with contextlib.ExitStack() as stack:
        for span in spans:  # each ends when the publish does, with its error recorded
            stack.enter_context(_Current(span, end=True))
        yield


_NOTHING = contextlib.nullcontext()


def current_context_if_tracing() -> Any:
    """The current OpenTelemetry context when tracing, to resume later; else None."""
    if active_tracer() is None:
        return None
    return _context.get_current()


@contextlib.contextmanager
def _attached(otel_context: Any) -> Iterator[None]:
    token = _context.attach(otel_context)
    try:
        yield
    finally:
        _context.detach(token)


def attached(otel_context: Any) -> contextlib.AbstractContextManager[None]:
    """Make a context kept by :func:`current_context_if_tracing` current again."""
    return _NOTHING if otel_context is None else _attached(otel_context)


def send_span(system: str, rows: Sequence[Any]) -> contextlib.AbstractContextManager[None]:
    """The relay's ``send`` span around publishing ``rows`` (outbox rows), if tracing."""
    if active_tracer() is None:
        return _NOTHING
    return _send_spans(system, rows)


class ProcessSpans:
    """The ``process`` spans of one consumer group."""

    __slots__ = ("_constant", "group", "parenting", "system")

    def __init__(self, system: str, group: str, parenting: TraceParenting | str) -> None:
        self.system = system
        self.group = group
        self.parenting = TraceParenting(parenting)
        # The attributes every process span of the group has, copied into each.
        self._constant = {
            SYSTEM: system,
            OPERATION_TYPE: "process",
            OPERATION_NAME: "process",
            CONSUMER_GROUP: group,
        }

    def start(self, event: Any) -> Any:
        """Start (not activate) the process span of a CloudEvent; None if not tracing."""
        tracer = active_tracer()
        if tracer is None:
            return None
        remote = parse_trace_context(event.traceparent, event.tracestate)
        links: tuple[Any, ...] = ()
        parent = None
        if remote is not None:
            if self.parenting is TraceParenting.PARENT:
                parent = _trace.set_span_in_context(_trace.NonRecordingSpan(remote))
            else:
                links = (_trace.Link(remote),)
        attributes = {**self._constant, DESTINATION: event.type, MESSAGE_ID: event.id}
        if event.correlationid:
            attributes[CONVERSATION_ID] = event.correlationid
        return tracer.start_span(
            f"process {event.type}",
            context=parent if parent is not None else _context.Context(),
            kind=_trace.SpanKind.CONSUMER,
            links=links,
            attributes=attributes,
        )

    @staticmethod
    def activate(span: Any, *, end: bool = True) -> contextlib.AbstractContextManager[Any]:
        """Make ``span`` current (errors recorded on it); ends it on exit if ``end``."""
        if span is None:
            return _NOTHING
        return _Current(span, end)

    @staticmethod
    def end(spans: Sequence[Any]) -> None:
        for span in spans:
            if span is not None:
                span.end()


class _Current:
    """What ``opentelemetry.trace.use_span`` does, as a class: a process span per event is
    made current once each, and a generator-based context manager costs twice this."""

    __slots__ = ("_end", "_span", "_token")

    def __init__(self, span: Any, end: bool) -> None:
        self._span = span
        self._end = end

    def __enter__(self) -> Any:
        self._token = _context.attach(_trace.set_span_in_context(self._span))
        return self._span

    def __exit__(self, kind: Any, error: BaseException | None, _traceback: Any) -> None:
        _context.detach(self._token)
        # Exceptions only, as use_span: a cancellation or exit is not the handler's error.
        if isinstance(error, Exception) and self._span.is_recording():
            self._span.record_exception(error)
            self._span.set_status(
                _trace.Status(_trace.StatusCode.ERROR, f"{type(error).__name__}: {error}")
            )
        if self._end:
            self._span.end()


def traced_handler_call(
    call: Callable[[Any], Any], handler_id: str, is_async: bool
) -> Callable[[Any], Any]:
    """``call`` (a domain event handler's ``handle``) inside a span named by the
    handler's class, when tracing."""
    name = handler_id.rsplit(".", 1)[-1]

    def attributes(event: Any) -> dict[str, str]:
        return {"tidings.handler": handler_id, "tidings.domain_event": type(event).__name__}

    if is_async:

        async def traced_async(event: Any) -> Any:
            tracer = active_tracer()
            if tracer is None:
                return await call(event)
            with tracer.start_as_current_span(name, attributes=attributes(event)):
                return await call(event)

        return traced_async

    def traced(event: Any) -> Any:
        tracer = active_tracer()
        if tracer is None:
            return call(event)
        with tracer.start_as_current_span(name, attributes=attributes(event)):
            return call(event)

    return traced
