"""``tidings lint``: the articles' naming rules, and the shipped examples passing them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tidings import BoundedContext, DomainEvent, DomainEventHandler, IntegrationEvent
from tidings.lint import lint_contexts
from tidings.naming import check_domain_event_name, check_integration_event_name, verb_phrase

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "name",
    [
        "ProductPutOnSale",
        "ProductPriceChanged",  # a generic verb after a named attribute is a specific fact
        "ProductStockLevelChanged",
        "OrderConfirmed",
        "OrderStartedDomainEvent",
        "StockRecalculated",
        "UserRegistered",
        "PaymentCaptured",
        "OrderPaid",
    ],
)
def test_specific_past_tense_domain_events_pass(name: str) -> None:
    assert check_domain_event_name(name) == []


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("ProductUpdated", "too-generic"),
        ("ProductChanged", "too-generic"),
        ("ProductModifiedDomainEvent", "too-generic"),
        ("ProductDetailsUpdated", "too-generic"),  # only a vague noun before the verb
        ("OrderStatusChanged", "too-generic"),
        ("CustomerDataSaved", "too-generic"),
        ("PutProductOnSale", "past-tense"),
        ("OrderConfirmation", "past-tense"),
    ],
)
def test_generic_or_present_tense_domain_events_warn(name: str, rule: str) -> None:
    [warning] = check_domain_event_name(name)

    assert (warning.name, warning.rule, warning.kind) == (name, rule, "domain event")


@pytest.mark.parametrize(
    "name",
    [
        "ProductUpdatedIntegrationEvent",
        "ProductPriceChangedIntegrationEvent",
        "OrderConfirmedIntegrationEvent",  # a shared concept may mirror the domain
        "InventoryModifiedIntegrationEvent",
        "PaymentCompletedIntegrationEvent",
        "UserRegisteredIntegrationEvent",
        "ProductFeedUpdatedIntegrationEvent",
    ],
)
def test_generic_or_shared_integration_events_pass(name: str) -> None:
    assert check_integration_event_name(name, ["ProductPutOnSale", "OrderConfirmed"]) == []


@pytest.mark.parametrize(
    ("name", "phrase"),
    [
        ("ProductPutOnSaleIntegrationEvent", "PutOnSale"),
        ("OrderShippedToCustomerIntegrationEvent", "ShippedToCustomer"),
        ("UserRegisteredWithGoogleIntegrationEvent", "RegisteredWithGoogle"),
    ],
)
def test_integration_events_carrying_a_domain_verb_phrase_warn(name: str, phrase: str) -> None:
    [warning] = check_integration_event_name(name, context="catalog")

    assert (warning.rule, warning.kind, warning.context) == (
        "too-specific",
        "integration event",
        "catalog",
    )
    assert f"'{phrase}'" in warning.advice


def test_the_advice_names_the_domain_event_whose_verb_the_contract_repeats() -> None:
    [warning] = check_integration_event_name(
        "ProductPutOnSaleIntegrationEvent", ["ProductRestocked", "ProductPutOnSale"]
    )

    assert "of the domain event ProductPutOnSale" in warning.advice


def test_verb_phrase() -> None:
    assert verb_phrase("ProductPutOnSale") == ["Put", "On", "Sale"]
    assert verb_phrase("ProductPriceChangedIntegrationEvent") == []
    assert verb_phrase("OrderStartedDomainEvent") == []


class GadgetPutOnShelf(DomainEvent):
    gadget_id: str


class GadgetPutOnShelfIntegrationEvent(IntegrationEvent):
    gadget_id: str


class PublishGadgetPutOnShelfIntegrationEventOnGadgetPutOnShelf(DomainEventHandler):
    publishes = (GadgetPutOnShelfIntegrationEvent,)

    def handle(self, event: GadgetPutOnShelf) -> None: ...


def test_lint_contexts_checks_what_each_context_publishes() -> None:
    context = BoundedContext("gadgets")
    context.subscribe(PublishGadgetPutOnShelfIntegrationEventOnGadgetPutOnShelf())

    mine = [w for w in lint_contexts([context]) if w.context == "gadgets"]

    assert [(w.name, w.rule) for w in mine] == [
        ("GadgetPutOnShelfIntegrationEvent", "too-specific")
    ]
    assert "of the domain event GadgetPutOnShelf" in mine[0].advice


def _tidings(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tidings", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "targets",
    [
        ["examples.ecommerce.system"],
        ["examples.catalog_api.app:catalog", "examples.catalog_api.app:search"],
    ],
    ids=["ecommerce", "catalog_api"],
)
def test_the_shipped_examples_pass_lint(targets: list[str]) -> None:
    result = _tidings("lint", *targets)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "follow the articles' rules" in result.stdout


def test_lint_json_lists_the_contexts_and_no_warnings_for_the_examples() -> None:
    result = _tidings(
        "lint", "examples.ecommerce.catalog:context", "examples.ecommerce.basket:context", "--json"
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"contexts": ["catalog", "basket"], "warnings": []}


def test_lint_exits_1_with_every_warning_as_json() -> None:
    result = _tidings("lint", "tests.support.lint_app:context", "--json")

    assert result.returncode == 1, result.stderr
    warnings = json.loads(result.stdout)["warnings"]
    assert {(w["name"], w["kind"], w["rule"], w["context"]) for w in warnings} == {
        ("ProductUpdated", "domain event", "too-generic", "shop"),
        ("ProductPutOnSaleIntegrationEvent", "integration event", "too-specific", "shop"),
    }


def test_lint_prints_warnings_for_people() -> None:
    result = _tidings("lint", "tests.support.lint_app:context")

    assert result.returncode == 1
    assert "ProductUpdated (domain event in shop, too-generic)" in result.stdout


def test_lint_exits_2_when_a_target_cannot_be_loaded() -> None:
    result = _tidings("lint", "no_such_module_here:context")

    assert result.returncode == 2
    assert "cannot import" in result.stderr


@pytest.mark.parametrize("document", ["docs/tutorial.md", "README.md"])
def test_the_event_names_the_docs_teach_pass(document: str) -> None:
    text = (ROOT / document).read_text()
    domain = re.findall(r"class (\w+)\(DomainEvent\)", text)
    integration = re.findall(r"class (\w+)\(IntegrationEvent\)", text)

    assert domain and integration
    assert [w for name in domain for w in check_domain_event_name(name)] == []
    assert [w for name in integration for w in check_integration_event_name(name, domain)] == []
