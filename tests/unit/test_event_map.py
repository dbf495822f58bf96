"""The event-flow map of the reference system, in every format, and its CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest

from tidings import BoundedContext, DomainEvent, DomainEventHandler, IntegrationEvent
from tidings.cli.loading import load_contexts
from tidings.errors import ConfigurationError
from tidings.eventmap import build_map, to_dot, to_html, to_mermaid

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def system_map() -> object:
    return build_map(load_contexts(["examples.ecommerce.system"]))


def test_every_contract_of_the_reference_system_has_its_producer_and_consumers(
    system_map: object,
) -> None:
    shape = system_map.to_json()  # type: ignore[attr-defined]
    contracts = {c["type"]: (c["producers"], c["consumers"]) for c in shape["contracts"]}
    assert contracts == {
        "catalog.product.updated": (["catalog"], ["basket"]),
        "catalog.product.price_changed": (["catalog"], ["basket"]),
        "identity.user.registered": (["identity"], ["ordering"]),
        "ordering.order.confirmed": (["ordering"], ["payments", "inventory", "notifications"]),
        "payments.payment.completed": (["payments"], ["ordering"]),
        "inventory.stock.modified": (["inventory"], []),
    }
    assert shape["warnings"] == []


def test_domain_flows_lead_from_events_to_handlers_to_contracts(system_map: object) -> None:
    shape = system_map.to_json()  # type: ignore[attr-defined]
    catalog = next(c for c in shape["contexts"] if c["name"] == "catalog")
    flows = {flow["event"]: flow["handlers"] for flow in catalog["domain_events"]}
    names = {h["name"]: h["publishes"] for h in flows["ProductPutOnSale"]}
    assert names["PublishUpdatedProductIntegrationEventOnProductPutOnSale"] == [
        "catalog.product.updated v1"
    ]
    assert names["ProjectProductOnPutProductOnSale"] == []


def test_mermaid_draws_a_subgraph_per_context_and_an_edge_per_flow(system_map: object) -> None:
    text = to_mermaid(system_map)  # type: ignore[arg-type]
    assert text.startswith("flowchart LR\n")
    assert text.count("subgraph ") == 7
    assert text.count(" end\n") == 7
    ids = dict(re.findall(r"(n\d+)[\[\(\{]+\"([^\"]+)\"", text))
    by_label = {label: node for node, label in ids.items()}
    publisher = by_label["PublishOrderConfirmedIntegrationEventOnOrderConfirmed"]
    contract = by_label["ordering.order.confirmed v1"]
    consumer = by_label["SendConfirmationEmailOnOrderConfirmed"]
    assert f"{publisher} --> {contract}" in text
    assert f"{contract} --> {consumer}" in text


def test_dot_is_one_digraph_with_a_cluster_per_context(system_map: object) -> None:
    text = to_dot(system_map)  # type: ignore[arg-type]
    assert text.startswith("digraph tidings {") and text.rstrip().endswith("}")
    assert len(re.findall(r"subgraph cluster_\d+ \{", text)) == 7
    assert text.count("{") == text.count("}")
    assert "shape=hexagon" in text


def test_html_is_self_contained(system_map: object) -> None:
    page = to_html(system_map)  # type: ignore[arg-type]
    assert page.startswith("<!DOCTYPE html>")
    assert "<svg" in page and "</svg>" in page
    assert "<script" not in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page
    assert "payments.payment.completed" in page


class StockSoldOutIntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = "test.map.sold_out"
    sku_id: str


class Undeclared:
    def handle(self, event: StockSoldOutIntegrationEvent) -> None: ...


class ThingHappened(DomainEvent):
    thing_id: str


class Wrong(DomainEventHandler):
    publishes = (ThingHappened,)

    def handle(self, event: ThingHappened) -> None: ...


def test_a_consumed_contract_nobody_declares_publishing_is_a_warning() -> None:
    context = BoundedContext("shop", database_url="sqlite://")
    context.subscribe(Undeclared())
    event_map = build_map([context])
    assert event_map.warnings and "test.map.sold_out v1" in event_map.warnings[0]


def test_publishes_must_name_integration_events() -> None:
    context = BoundedContext("shop", database_url="sqlite://")
    context.subscribe(Wrong())
    with pytest.raises(ConfigurationError, match="publishes names"):
        build_map([context])


@pytest.mark.parametrize("output_format", ["mermaid", "dot", "html", "json"])
def test_cli_writes_each_format(tmp_path: Path, output_format: str) -> None:
    out = tmp_path / f"map.{output_format}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tidings",
            "map",
            "examples.ecommerce.system",
            "--format",
            output_format,
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "7 contexts and 6 contracts" in result.stdout
    text = out.read_text()
    if output_format == "json":
        assert {c["name"] for c in json.loads(text)["contexts"]} >= {"catalog", "basket"}
    else:
        assert "ordering.order.confirmed" in text


def test_the_map_in_the_docs_is_the_one_the_command_draws(system_map: object) -> None:
    doc = (ROOT / "docs" / "map.md").read_text()
    block = re.search(r"```mermaid\n(.*?)```", doc, re.S)
    assert block is not None, "docs/map.md shows the reference system's map"
    assert block.group(1) == to_mermaid(system_map), (  # type: ignore[arg-type]
        "regenerate it: tidings map examples.ecommerce.system"
    )
