"""The OpenTelemetry layer's edges: absent, installed without an SDK, and its parsing.

Processes of their own where the global providers matter (a process sets them once).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from typer.testing import CliRunner

from tidings.cli.app import app
from tidings.observability.tracing import (
    format_trace_context,
    messaging_system,
    parse_trace_context,
)

ROOT = Path(__file__).resolve().parents[2]
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

# A use case publishing one integration event on an in-memory SQLite database; prints
# the traceparent its outbox row carries.
_USE_CASE = """
    from typing import ClassVar
    from sqlalchemy import select
    from tidings import BoundedContext, IntegrationEvent
    from tidings.persistence.tables import outbox

    class PingedIntegrationEvent(IntegrationEvent):
        event_type: ClassVar[str] = "test.pinged"
        event_version: ClassVar[int] = 1
        ping_id: str

    ctx = BoundedContext("pinger", database_url="sqlite:///{path}", broker_url="memory://x")
    ctx.create_tables()
    with ctx.transaction():
        ctx.integration_events.publish(PingedIntegrationEvent(ping_id="1"))
    with ctx.engine.connect() as connection:
        print(connection.execute(select(outbox.c.traceparent)).scalar_one())
"""


def _run(prelude: str, tmp_path: Path) -> list[str]:
    code = textwrap.dedent(prelude) + textwrap.dedent(_USE_CASE).format(path=tmp_path / "c.db")
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_without_opentelemetry_nothing_is_imported_and_events_carry_no_trace(
    tmp_path: Path,
) -> None:
    blocked = """
        import sys
        sys.modules["opentelemetry"] = None  # as if tidings[otel] were not installed
    """
    assert _run(blocked, tmp_path) == ["None"]


def test_with_the_api_but_no_sdk_no_span_is_made_and_the_api_loads_on_first_use(
    tmp_path: Path,
) -> None:
    check = """
        import sys
        import tidings
        assert not [m for m in sys.modules if m.startswith("opentelemetry")], "imported early"
    """
    assert _run(check, tmp_path) == ["None"]


def test_with_the_api_but_no_sdk_the_current_span_is_passed_on(tmp_path: Path) -> None:
    """An application's own remote context (e.g. from an HTTP request) still travels."""
    remote = f"""
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
        carrier = {{"traceparent": "{TRACEPARENT}"}}
        context.attach(TraceContextTextMapPropagator().extract(carrier))
    """
    assert _run(remote, tmp_path) == [TRACEPARENT]


def test_trace_context_round_trips_and_malformed_headers_are_ignored() -> None:
    span_context = parse_trace_context(TRACEPARENT, "vendor=value")
    assert span_context is not None and span_context.is_remote
    assert format_trace_context(span_context) == (TRACEPARENT, "vendor=value")
    for malformed in [None, "", "00-abc-def-01", "ff-" + TRACEPARENT[3:], TRACEPARENT[:-2] + "zz"]:
        assert parse_trace_context(malformed) is None
    assert parse_trace_context("00-" + "0" * 32 + "-b7ad6b7169203331-01") is None  # invalid id


def test_messaging_system_names_the_broker() -> None:
    assert messaging_system("amqp://guest@localhost/") == "rabbitmq"
    assert messaging_system("kafka://localhost:9092") == "kafka"
    assert messaging_system("rediss://localhost") == "redis"
    assert messaging_system("sqlite:///broker.db") == "sqlite"


def test_the_long_running_commands_offer_metrics_and_trace_parenting() -> None:
    runner = CliRunner()
    for command in ("run", "relay", "consume"):
        shown = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output
        assert "--metrics-port" in shown and "--metrics-host" in shown, command
    for command in ("run", "consume"):
        shown = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output
        assert "--trace-parenting" in shown, command


def test_serve_metrics_refuses_when_the_application_has_a_meter_provider() -> None:
    code = textwrap.dedent(
        """
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from tidings.errors import ConfigurationError
        from tidings.observability import serve_metrics
        metrics.set_meter_provider(MeterProvider())
        try:
            serve_metrics(0)
        except ConfigurationError as error:
            print("refused:", error)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.startswith("refused: a MeterProvider is configured already"), done
