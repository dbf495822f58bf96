"""tidings' metrics through the OpenTelemetry metrics API (see docs/tracing.md).

Counters are added to once per batch and attribute set (context, event type), with
the batch's count, so counting stays exact and cheap; histograms record one value per
event. Nothing is recorded until the application (or ``--metrics-port``) configures an
SDK ``MeterProvider``: every recording function first asks :func:`active_meter`.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

# The API module, imported on first use (``import tidings`` does not pay for it).
_metrics: Any = None
_internal: Any = None  # opentelemetry.metrics._internal, which holds the global provider
_missing = False

if TYPE_CHECKING:
    from tidings.context import BoundedContext

logger = logging.getLogger("tidings.metrics")

CONTEXT = "tidings.context"
EVENT_TYPE = "tidings.event_type"
REASON = "tidings.reason"

# Seconds, from a millisecond to a minute: handler runs and commit-to-broker delays.
_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

# name -> (description, unit); counters of events by context and type.
COUNTERS = {
    "published": "integration events committed to the outbox",
    "relayed": "integration events confirmed by the broker",
    "received": "deliveries admitted for handling (decoded and validated)",
    "handled": "events whose handlers ran and committed",
    "failed": "failed handling attempts",
    "retried": "delayed retries of failed events",
    "dead_lettered": "messages dead-lettered, by reason",
    "duplicates": "redelivered events skipped by the inbox",
}


class _Instruments:
    def __init__(self, meter: Any) -> None:
        self.counters = {
            name: meter.create_counter(
                f"tidings.events.{name}", unit="{event}", description=description
            )
            for name, description in COUNTERS.items()
        }
        self.handler_duration = meter.create_histogram(
            "tidings.handler.duration",
            unit="s",
            description="time an integration event's handlers took",
            explicit_bucket_boundaries_advisory=_SECONDS_BUCKETS,
        )
        self.relay_delay = meter.create_histogram(
            "tidings.relay.delay",
            unit="s",
            description="from an event's occurred_at (normally its publication) to the broker's"
            " confirmation",
            explicit_bucket_boundaries_advisory=_SECONDS_BUCKETS,
        )
        meter.create_observable_gauge(
            "tidings.outbox.pending",
            callbacks=[_observe_pending],
            unit="{event}",
            description="integration events in the outbox not yet relayed",
        )
        meter.create_observable_gauge(
            "tidings.outbox.oldest_age",
            callbacks=[_observe_oldest_age],
            unit="s",
            description="age of the oldest integration event the outbox holds",
        )
        self._attributes: dict[tuple[str, ...], dict[str, str]] = {}

    def attributes(self, *key: str) -> dict[str, str]:
        attributes = self._attributes.get(key)
        if attributes is None:
            names = (CONTEXT, EVENT_TYPE, REASON)
            attributes = self._attributes[key] = dict(zip(names, key, strict=False))
        return attributes


_instruments: _Instruments | None = None


def active_meter() -> _Instruments | None:
    """tidings' instruments, or None while no SDK meter provider is configured.

    A provider is set once per process and never unset: cached once positive. Until
    then it reads the API's global (``get_meter_provider()`` looks up an environment
    variable on each call while no provider is set, which costs microseconds).
    """
    global _instruments, _metrics, _internal, _missing
    if _instruments is not None:
        return _instruments
    if _metrics is None:
        if _missing:
            return None
        try:
            from opentelemetry import metrics
            from opentelemetry.metrics import _internal as internal
        except ImportError:
            _missing = True
            return None
        _metrics, _internal = metrics, internal
        metrics.get_meter_provider()  # loads a provider named by OTEL_PYTHON_METER_PROVIDER
    provider = getattr(_internal, "_METER_PROVIDER", _internal)
    if provider is None:
        return None
    if provider is _internal:  # an API without that global: ask it
        provider = _metrics.get_meter_provider()
    if type(provider).__name__ in ("_ProxyMeterProvider", "NoOpMeterProvider"):
        return None
    _instruments = _Instruments(provider.get_meter("tidings"))
    return _instruments


def count(name: str, context: str, types: Iterable[str], reason: str | None = None) -> None:
    """Add events of ``types`` (one entry per event) to counter ``name``, once per type."""
    instruments = active_meter()
    if instruments is None:
        return
    counter = instruments.counters[name]
    extra = () if reason is None else (reason,)
    for event_type, n in Counter(types).items():
        counter.add(n, instruments.attributes(context, event_type, *extra))


def count_rows(name: str, rows: Sequence[Any]) -> None:
    """Count outbox rows (``published``, ``relayed``) by their source and type."""
    instruments = active_meter()
    if instruments is None or not rows:
        return
    counter = instruments.counters[name]
    for (source, event_type), n in Counter(
        (row["source"], row["event_type"]) for row in rows
    ).items():
        counter.add(n, instruments.attributes(source, event_type))


def record_relay_delays(rows: Sequence[Any]) -> None:
    """Record the delay of rows the broker just confirmed, since their ``occurred_at``
    (the relay reads no other timestamp, to keep its per-row conversions few)."""
    instruments = active_meter()
    if instruments is None:
        return
    now = datetime.now(UTC)
    histogram = instruments.relay_delay
    for row in rows:
        occurred = row["occurred_at"]
        if occurred.tzinfo is None:
            occurred = occurred.replace(tzinfo=UTC)
        histogram.record(
            (now - occurred).total_seconds(),
            instruments.attributes(row["source"], row["event_type"]),
        )


def record_handler_duration(context: str, event_type: str, started: float) -> None:
    """Record how long handlers took since ``started`` (``time.perf_counter()``)."""
    instruments = active_meter()
    if instruments is not None:
        instruments.handler_duration.record(
            time.perf_counter() - started, instruments.attributes(context, event_type)
        )


# -- outbox gauges ---------------------------------------------------------------------------
_observed: weakref.WeakValueDictionary[str, BoundedContext] = weakref.WeakValueDictionary()


def observe_outbox(context: BoundedContext) -> None:
    """Report ``context``'s outbox in the ``tidings.outbox.pending`` and
    ``tidings.outbox.oldest_age`` gauges (a query each time metrics are collected).

    ``tidings relay|run --metrics-port`` does it for the context it runs.
    """
    _observed[context.name] = context


def _outbox_state(context: BoundedContext) -> tuple[int, float]:
    from sqlalchemy import func, select

    from tidings.persistence.tables import outbox

    query = select(func.count(), func.min(outbox.c.created_at)).where(
        outbox.c.published_at.is_(None)
    )
    with context.read_connection() as connection:
        pending, oldest = connection.execute(query).one()
    if oldest is None:
        return int(pending), 0.0
    if oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    return int(pending), max((datetime.now(UTC) - oldest).total_seconds(), 0.0)


def _observations(index: int) -> list[Any]:
    observations = []
    for name, context in list(_observed.items()):
        try:
            value = _outbox_state(context)[index]
        except Exception as error:  # a scrape must not fail for one unreachable database
            logger.warning("could not read the outbox of %s: %r", name, error)
            continue
        observations.append(_metrics.Observation(value, {CONTEXT: name}))
    return observations


def _observe_pending(_options: Any) -> list[Any]:
    return _observations(0)


def _observe_oldest_age(_options: Any) -> list[Any]:
    return _observations(1)
