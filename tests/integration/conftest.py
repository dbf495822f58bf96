"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@pytest.fixture
def span_exporter() -> Iterator[InMemorySpanExporter]:
    """The OpenTelemetry SDK's spans in memory, for this test only."""
    from tests.support import otel

    try:
        yield otel.span_exporter()
    finally:
        otel.stop_capturing()
