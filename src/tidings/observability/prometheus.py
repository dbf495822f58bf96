"""Serving tidings' metrics in the Prometheus text format (``--metrics-port``).

The OpenTelemetry SDK collects them and ``opentelemetry-exporter-prometheus`` with
``prometheus_client``'s HTTP server (the ``metrics`` extra) serves ``/metrics``.
"""

from __future__ import annotations

from typing import Any

from tidings.errors import ConfigurationError, MissingExtraError

DEFAULT_HOST = "127.0.0.1"


def serve_metrics(port: int, host: str = DEFAULT_HOST) -> Any:
    """Configure an SDK ``MeterProvider`` exporting to Prometheus and serve it on
    ``host:port``; returns the HTTP server (``server.shutdown()`` stops it).

    Bound to the loopback interface unless ``host`` says otherwise: metrics name the
    system's contexts and event types.
    """
    try:
        from opentelemetry import metrics
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from prometheus_client import start_http_server
    except ImportError as error:
        raise MissingExtraError("--metrics-port", "metrics") from error
    if type(metrics.get_meter_provider()).__name__ != "_ProxyMeterProvider":
        raise ConfigurationError(
            "a MeterProvider is configured already: add opentelemetry-exporter-prometheus's "
            "PrometheusMetricReader to it and serve prometheus_client yourself, instead of "
            "--metrics-port"
        )
    metrics.set_meter_provider(MeterProvider(metric_readers=[PrometheusMetricReader()]))
    server, _thread = start_http_server(port, addr=host)
    return server
