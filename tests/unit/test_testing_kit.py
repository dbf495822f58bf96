"""tidings.testing: the docs' example tests pass, and catch the mistakes they promise to."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import ClassVar

import pytest

from tidings import BoundedContext, IntegrationEvent, IntegrationEventHandler
from tidings.testing import (
    CrashInHandler,
    Scenario,
    deliver,
    deterministic,
    outbox_mark,
    published,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"
PUBLISH = """        self._producer.publish(
            ProductUpdatedIntegrationEvent(product_id=event.product_id, price=event.price)
        )
"""


def _example(tmp_path: Path, code: str | None = None) -> subprocess.CompletedProcess[str]:
    source = code if code is not None else _doc_code()
    test_file = tmp_path / "test_users_own.py"
    test_file.write_text(source)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _doc_code() -> str:
    return "\n\n".join(re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL))


def test_the_documented_tests_pass_as_written(tmp_path: Path) -> None:
    result = _example(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "4 passed" in result.stdout


def test_they_catch_a_handler_that_publishes_twice(tmp_path: Path) -> None:
    code = _doc_code()
    assert PUBLISH in code
    result = _example(tmp_path, code.replace(PUBLISH, PUBLISH + PUBLISH))
    assert result.returncode == 1
    assert "found 2" in result.stdout


def test_they_catch_a_handler_that_publishes_the_wrong_contract(tmp_path: Path) -> None:
    code = _doc_code().replace(
        PUBLISH,
        PUBLISH.replace("ProductUpdatedIntegrationEvent(", "ProductPricedIntegrationEvent("),
    )
    code += (
        "\n\nclass ProductPricedIntegrationEvent(IntegrationEvent):\n"
        '    event_type: ClassVar[str] = "catalog.product.priced"\n'
        "    product_id: str\n    price: Decimal\n"
    )
    result = _example(tmp_path, code)
    assert result.returncode == 1
    assert "found 0; published: ProductPricedIntegrationEvent" in result.stdout


class ParcelShippedIntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = "test.kit.parcel_shipped"
    parcel_id: str


class ParcelDeliveredIntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = "test.kit.parcel_delivered"
    parcel_id: str


class DeliverParcelOnShipped(IntegrationEventHandler):
    publishes = (ParcelDeliveredIntegrationEvent,)

    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def handle(self, event: ParcelShippedIntegrationEvent) -> None:
        self._context.integration_events.publish(
            ParcelDeliveredIntegrationEvent(parcel_id=event.parcel_id)
        )


class CountDelivered(IntegrationEventHandler):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def handle(self, event: ParcelDeliveredIntegrationEvent) -> None:
        self.seen.append(event.parcel_id)


class FailAlways(IntegrationEventHandler):
    def handle(self, event: ParcelShippedIntegrationEvent) -> None:
        raise RuntimeError("the carrier is down")


@pytest.mark.parametrize("broker", ["memory", "sqlite"])
async def test_deliver_follows_events_handlers_publish_in_turn(
    tidings_context, tmp_path: Path, broker: str
) -> None:
    broker_url = None if broker == "memory" else f"sqlite:///{tmp_path / 'broker.db'}"
    shipping = tidings_context("shipping", broker_url=broker_url)
    carrier = tidings_context("carrier", broker_url=broker_url)
    customer = tidings_context("customer", broker_url=broker_url)
    carrier.subscribe(DeliverParcelOnShipped(carrier))
    counter = customer.subscribe(CountDelivered())
    async with shipping.transaction():
        for parcel in ("a", "b", "c"):
            shipping.integration_events.publish(ParcelShippedIntegrationEvent(parcel_id=parcel))
    report = await deliver(shipping, carrier, customer)
    assert sorted(counter.seen) == ["a", "b", "c"]  # per-key order only: three keys
    assert report.handled == {"carrier": 3, "customer": 3}
    assert report.relayed == {"shipping": 3, "carrier": 3, "customer": 0}
    published(carrier).assert_published(ParcelDeliveredIntegrationEvent, parcel_id="b")


async def test_a_failing_handler_is_dead_lettered_not_waited_for(tidings_context) -> None:
    shipping = tidings_context("shipping")
    carrier = tidings_context("carrier")
    carrier.subscribe(FailAlways())
    async with shipping.transaction():
        shipping.integration_events.publish(ParcelShippedIntegrationEvent(parcel_id="x"))
    report = await deliver(shipping, carrier, max_attempts=2, timeout=20)
    assert report.dead_lettered == {"carrier": 1}


async def test_a_scenario_keeps_what_each_context_published(tidings_context) -> None:
    shipping = tidings_context("shipping")
    carrier = tidings_context("carrier")
    carrier.subscribe(DeliverParcelOnShipped(carrier))
    scenario = Scenario(shipping, carrier)

    def ship() -> None:
        shipping.integration_events.publish(ParcelShippedIntegrationEvent(parcel_id="p"))

    await scenario.when(shipping, ship)
    scenario.then_published(shipping, ParcelShippedIntegrationEvent, parcel_id="p")
    scenario.then_published(carrier, ParcelDeliveredIntegrationEvent, parcel_id="p")
    scenario.then_nothing_else_published()
    assert outbox_mark(carrier) == 1


def test_deterministic_ids_repeat_and_keep_their_order() -> None:
    def make() -> list[str]:
        with deterministic(seed=3):
            return [str(ParcelShippedIntegrationEvent(parcel_id="p").event_id) for _ in range(3)]

    first, second = make(), make()
    assert first == second
    assert first == sorted(first)
    assert str(ParcelShippedIntegrationEvent(parcel_id="p").event_id) not in first


def test_a_crash_in_a_handler_kills_before_commit(tmp_path: Path) -> None:
    program = tmp_path / "crashing.py"
    program.write_text(
        "import asyncio\n"
        "from tests.unit.test_testing_kit import *\n"
        "from tidings.testing import CrashInHandler, deliver\n"
        f"url = 'sqlite:///{tmp_path / 'broker.db'}'\n"
        f"shipping = BoundedContext('shipping', database_url='sqlite:///{tmp_path}/s.db',"
        " broker_url=url)\n"
        f"carrier = BoundedContext('carrier', database_url='sqlite:///{tmp_path}/c.db',"
        " broker_url=url)\n"
        "shipping.create_tables(); carrier.create_tables()\n"
        "carrier.subscribe(CrashInHandler(DeliverParcelOnShipped(carrier), on_event=1))\n"
        "with shipping.transaction():\n"
        "    shipping.integration_events.publish(ParcelShippedIntegrationEvent(parcel_id='z'))\n"
        "asyncio.run(deliver(shipping, carrier))\n"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, str(program)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == -9  # SIGKILL, inside the handler
    carrier = BoundedContext("carrier", database_url=f"sqlite:///{tmp_path}/c.db")
    try:
        published(carrier).assert_nothing_published()  # the handler's transaction never committed
    finally:
        carrier.dispose()
    assert CrashInHandler  # exported


def test_published_reads_only_after_a_mark(tidings_context) -> None:
    shipping = tidings_context("shipping")
    with shipping.transaction():
        shipping.integration_events.publish(ParcelShippedIntegrationEvent(parcel_id="1"))
    mark = outbox_mark(shipping)
    with shipping.transaction():
        shipping.integration_events.publish(ParcelShippedIntegrationEvent(parcel_id="2"))
    later = published(shipping, since=mark)
    assert [e.parcel_id for e in later] == ["2"]  # type: ignore[attr-defined]
    with pytest.raises(AssertionError, match="also published"):
        published(shipping).assert_nothing_else()
    assert Decimal  # keeps the import list honest for the docs' style
