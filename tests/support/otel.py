"""The OpenTelemetry SDK for the tests: one provider per process, spans and metrics in memory.

OpenTelemetry lets a process set its global providers once; every test shares them,
clearing the span exporter first and reading metrics of its own contexts' names.
"""

from __future__ import annotations

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class _Capturing(SimpleSpanProcessor):
    """Exports only while a test captures: the provider outlives the test, and the
    tests after it must not fill the exporter's memory."""

    capturing = False

    def on_end(self, span: ReadableSpan) -> None:
        if self.capturing:
            super().on_end(span)


_exporter: InMemorySpanExporter | None = None
_processor: _Capturing | None = None


def span_exporter() -> InMemorySpanExporter:
    """The in-memory exporter of the process's SDK provider, cleared and capturing."""
    global _exporter, _processor
    if _exporter is None or _processor is None:
        provider = TracerProvider()
        _exporter = InMemorySpanExporter()
        _processor = _Capturing(_exporter)
        provider.add_span_processor(_processor)
        trace.set_tracer_provider(provider)
    _exporter.clear()
    _processor.capturing = True
    return _exporter


def stop_capturing() -> None:
    if _processor is not None and _exporter is not None:
        _processor.capturing = False
        _exporter.clear()


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def one(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    found = by_name(spans, name)
    assert len(found) == 1, f"{len(found)} spans named {name!r}: {[s.name for s in spans]}"
    return found[0]


def parent_of(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


_reader: InMemoryMetricReader | None = None


def metric_reader() -> InMemoryMetricReader:
    """The in-memory reader of the process's SDK meter provider (set on first use)."""
    global _reader
    if _reader is None:
        _reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[_reader]))
    return _reader


def metric_value(reader: InMemoryMetricReader, name: str, **attributes: str) -> float:
    """Sum of the points of metric ``name`` whose attributes include ``attributes``
    (keys given without their ``tidings.`` prefix); a histogram's count."""
    wanted = {f"tidings.{key}": value for key, value in attributes.items()}
    data = reader.get_metrics_data()
    total = 0.0
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name != name:
                    continue
                for point in metric.data.data_points:
                    found = dict(point.attributes or {})
                    if all(found.get(k) == v for k, v in wanted.items()):
                        total += getattr(point, "value", None) or getattr(point, "count", 0)
    return total
