"""``--metrics-port``: tidings relay, run and consume serve exact counts to Prometheus.

Seven use cases in catalog (each publishing two events) go through ``tidings relay``
(catalog), ``tidings run`` (basket, which publishes in turn) and ``tidings consume``
(notifications, ``--trace-parenting link``), each serving its metrics; scraped over
HTTP and parsed with ``prometheus_client``'s parser, the counters match the events sent
exactly. The same processes configure the OpenTelemetry SDK in the module defining
their context, and their spans show the trace going on from process to process.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import traced_app
from tests.support.consumer_infra import declare, new_tag
from tidings.consumer import Consumer

ROOT = Path(__file__).resolve().parents[2]
TIDINGS = Path(sys.executable).with_name("tidings")
USE_CASES = 7
CHANGED = traced_app.PriceChangedIntegrationEvent.event_type
ANNOUNCED = traced_app.PriceAnnouncedIntegrationEvent.event_type
REPRICED = traced_app.BasketRepricedIntegrationEvent.event_type

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _scrape(port: int) -> Samples:
    """Every sample of ``/metrics``, keyed by name and labels (scope labels left out)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = frozenset(
                (k, v) for k, v in sample.labels.items() if not k.startswith("otel_scope")
            )
            samples[(sample.name, labels)] = sample.value
    return samples


def _value(samples: Samples, name: str, **labels: str) -> float:
    wanted = {(f"tidings_{key}", value) for key, value in labels.items()}
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= found)


def _wait_for(port: int, condition: Callable[[Samples], bool], what: str) -> Samples:
    deadline = time.monotonic() + 60
    while True:
        try:
            samples = _scrape(port)
            if condition(samples):
                return samples
        except OSError:
            pass  # not listening yet
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _reaches(name: str, expected: float, **labels: str) -> Callable[[Samples], bool]:
    return lambda samples: _value(samples, name, **labels) >= expected


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        process.send_signal(signal.SIGINT)
    for process in started:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


async def test_metrics_served_by_the_cli_count_exactly_the_events_sent(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    tag = new_tag()
    broker_url = f"sqlite:///{tmp_path / 'broker.db'}"
    catalog, basket, notifications = traced_app.build(str(tmp_path), broker_url, tag)
    await declare(Consumer(basket))
    await declare(Consumer(notifications))
    for n in range(USE_CASES):
        traced_app.change_price(catalog, f"p-{n}", n)
    for context in (catalog, basket, notifications):
        await context.adispose()

    env = {
        **os.environ,
        traced_app.FOLDER_ENV: str(tmp_path),
        traced_app.BROKER_ENV: broker_url,
        traced_app.SUFFIX_ENV: tag,
        "PYTHONPATH": str(ROOT),
    }
    ports = {name: _free_port() for name in ("catalog", "basket", "notifications")}
    spans = {name: tmp_path / f"{name}.spans" for name in ports}
    for command, name, *options in [
        ("relay", "catalog"),
        ("run", "basket"),
        ("consume", "notifications", "--trace-parenting", "link"),
    ]:
        app = f"tests.support.traced_app:{name}"
        processes.append(
            subprocess.Popen(
                [str(TIDINGS), command, app, "--metrics-port", str(ports[name]), *options],
                env={**env, traced_app.SPANS_ENV: str(spans[name])},
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                text=True,
            )
        )

    catalog_name, basket_name, notifications_name = (
        f"{name}{tag}" for name in ("catalog", "basket", "notifications")
    )
    relayed = "tidings_events_relayed_total"
    handled = "tidings_events_handled_total"
    sent = await asyncio.to_thread(
        _wait_for, ports["catalog"], _reaches(relayed, 2 * USE_CASES), "catalog's relay"
    )
    assert _value(sent, relayed, context=catalog_name, event_type=CHANGED) == USE_CASES
    assert _value(sent, relayed, context=catalog_name, event_type=ANNOUNCED) == USE_CASES
    assert _value(sent, "tidings_relay_delay_seconds_count") == 2 * USE_CASES
    # The gauges query the outbox: emptied once the confirmed rows are deleted.
    emptied = await asyncio.to_thread(
        _wait_for,
        ports["catalog"],
        lambda samples: (
            _value(samples, "tidings_outbox_pending", context=catalog_name) == 0
            and (
                "tidings_outbox_oldest_age_seconds",
                frozenset({("tidings_context", catalog_name)}),
            )
            in samples
        ),
        "an empty outbox",
    )
    assert _value(emptied, "tidings_outbox_oldest_age_seconds", context=catalog_name) == 0

    basket_samples = await asyncio.to_thread(
        _wait_for, ports["basket"], _reaches(relayed, USE_CASES, event_type=REPRICED), "basket"
    )
    for name, event_type in [
        ("tidings_events_received_total", CHANGED),
        (handled, CHANGED),
        ("tidings_events_published_total", REPRICED),
        (relayed, REPRICED),
    ]:
        labels = {"context": basket_name, "event_type": event_type}
        assert _value(basket_samples, name, **labels) == USE_CASES, (name, basket_samples)
    assert _value(basket_samples, "tidings_handler_duration_seconds_count") == USE_CASES
    for nothing in ("failed", "dead_lettered", "duplicates", "retried"):
        assert _value(basket_samples, f"tidings_events_{nothing}_total") == 0

    notified = await asyncio.to_thread(
        _wait_for, ports["notifications"], _reaches(handled, 2 * USE_CASES), "notifications"
    )
    assert _value(notified, handled, context=notifications_name, event_type=ANNOUNCED) == (
        USE_CASES
    )
    assert _value(notified, handled, context=notifications_name, event_type=REPRICED) == (USE_CASES)
    assert _value(notified, "tidings_events_received_total") == 2 * USE_CASES

    # The processes configured the SDK in the module defining their context: basket's
    # handlers published under their process spans; notifications' process spans
    # (--trace-parenting link) start traces of their own, linked to basket's creates.
    basket_spans = _spans(spans["basket"])
    notified_spans = _spans(spans["notifications"])
    processed = {s["context"]["span_id"] for s in basket_spans if s["name"] == f"process {CHANGED}"}
    created = {
        s["context"]["span_id"]: s["parent_id"]
        for s in basket_spans
        if s["name"] == f"create {REPRICED}"
    }
    assert len(processed) == len(created) == USE_CASES
    assert set(created.values()) == processed
    linked = [s for s in notified_spans if s["name"] == f"process {REPRICED}"]
    assert all(span["parent_id"] is None for span in linked)
    assert sorted(link["context"]["span_id"] for s in linked for link in s["links"]) == sorted(
        created
    )


def _spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
