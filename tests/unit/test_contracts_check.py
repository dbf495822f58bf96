"""check_compatibility on whole contracts: added, removed, new versions, upcasters; the
snapshot files export writes."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel

from tidings import BoundedContext, IntegrationEvent
from tidings.contracts import (
    ContractCatalog,
    Snapshot,
    check_compatibility,
    contract_schema,
    export_snapshot,
    payload_schema,
    read_snapshot,
)
from tidings.errors import ConfigurationError, ContractSnapshotError

TYPE = "tests.contracts.check.priced"


class PricedIntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = TYPE
    event_version: ClassVar[int] = 1

    product_id: str
    price: Decimal


class PricedInCentsIntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = TYPE
    event_version: ClassVar[int] = 2

    product_id: str
    price_cents: int


class OldPriced(BaseModel):
    """The snapshot's version of v1, before ``price`` was added."""

    product_id: str


def snapshot_of(**schemas: dict[str, Any]) -> Snapshot:
    return Snapshot({(TYPE, int(v.lstrip("v"))): s for v, s in schemas.items()})


def context_with(upcaster: Any) -> BoundedContext:
    context = BoundedContext("pricing", database_url="sqlite://")
    context.add_upcaster(TYPE, 1, upcaster)
    return context


def test_an_unchanged_contract_has_no_findings() -> None:
    report = check_compatibility([PricedIntegrationEvent], Snapshot.of([PricedIntegrationEvent]))
    assert report.compatible and report.findings == () and report.contracts == 1


def test_a_required_field_added_in_place_breaks_backward_only() -> None:
    old = snapshot_of(v1=contract_schema(PricedIntegrationEvent) | payload_schema(OldPriced))
    for mode, compatible in (("backward", False), ("forward", True), ("full", False)):
        report = check_compatibility([PricedIntegrationEvent], old, mode)  # type: ignore[arg-type]
        assert report.compatible is compatible, mode
    [finding] = check_compatibility([PricedIntegrationEvent], old, "backward").breaking
    assert (finding.contract, finding.path, finding.rule) == (f"{TYPE} v1", "price", "field-added")
    assert "give 'price' a default" in finding.message
    assert f"publish {TYPE} v2 beside v1" in finding.message


def test_adding_a_contract_is_safe_and_removing_one_breaks_in_every_mode() -> None:
    snapshot = Snapshot.of([PricedIntegrationEvent])
    for mode in ("full", "backward", "forward"):
        added = check_compatibility([], Snapshot({}), mode)  # type: ignore[arg-type]
        assert added.compatible
        removed = check_compatibility([], snapshot, mode)  # type: ignore[arg-type]
        [finding] = removed.findings
        assert (finding.rule, finding.verdict, finding.direction) == (
            "contract-removed",
            "breaking",
            "both",
        )
    [added_finding] = check_compatibility([PricedIntegrationEvent], Snapshot({})).findings
    assert added_finding.rule == "contract-added" and added_finding.verdict == "compatible"


def test_a_new_version_beside_the_old_is_the_way_to_break_and_says_so() -> None:
    report = check_compatibility(
        [PricedIntegrationEvent, PricedInCentsIntegrationEvent],
        Snapshot.of([PricedIntegrationEvent]),
    )
    [finding] = report.findings
    assert report.compatible
    assert (finding.rule, finding.version) == ("new-version", 2)
    assert "the way to make a breaking change" in finding.message


def test_a_sound_upcaster_is_checked_with_generated_old_payloads() -> None:
    def to_cents(payload: dict[str, Any]) -> dict[str, Any]:
        price = Decimal(str(payload.pop("price")))
        return {**payload, "price_cents": int(price * 100)}

    catalog = ContractCatalog.of(
        [PricedIntegrationEvent, PricedInCentsIntegrationEvent],
        upcasters_of=[context_with(to_cents)],
    )
    report = check_compatibility(catalog, Snapshot.of([PricedIntegrationEvent]))
    upcaster = [f for f in report.findings if f.rule == "upcaster"]
    assert report.compatible
    assert [f.verdict for f in upcaster] == ["compatible"]
    assert "pricing's upcaster v1 -> v2" in upcaster[0].message


def test_an_upcaster_that_forgets_a_field_is_breaking_with_an_example() -> None:
    catalog = ContractCatalog.of(
        [PricedIntegrationEvent, PricedInCentsIntegrationEvent],
        upcasters_of=[context_with(lambda payload: payload)],
    )
    report = check_compatibility(catalog, Snapshot.of([PricedIntegrationEvent]), "forward")
    [finding] = report.breaking
    assert finding.rule == "upcaster"
    assert "price_cents" in finding.message and "product_id" in finding.message


def test_an_upcaster_without_its_target_version_is_breaking() -> None:
    context = BoundedContext("pricing", database_url="sqlite://")
    context.add_upcaster(TYPE, 2, dict)
    catalog = ContractCatalog.of([PricedInCentsIntegrationEvent], upcasters_of=[context])
    [finding] = check_compatibility(catalog, Snapshot.of([PricedInCentsIntegrationEvent])).findings
    assert (finding.rule, finding.verdict) == ("upcaster", "breaking")
    assert f"no {TYPE} v3 contract is defined" in finding.message


def test_an_unknown_mode_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="full, backward, forward"):
        check_compatibility([], Snapshot({}), "sideways")  # type: ignore[arg-type]


def test_export_is_deterministic_valid_and_removes_stale_schemas(tmp_path: Path) -> None:
    export_snapshot([PricedIntegrationEvent, PricedInCentsIntegrationEvent], tmp_path)
    first = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    export_snapshot([PricedInCentsIntegrationEvent, PricedIntegrationEvent], tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == first
    assert sorted(first) == sorted([f"{TYPE}.v1.json", f"{TYPE}.v2.json", "index.json"])
    schema = json.loads(first[f"{TYPE}.v1.json"])
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert (schema["x-tidings-type"], schema["x-tidings-version"]) == (TYPE, 1)
    assert schema["x-tidings-partition-key"] == "product_id"
    assert "event_id" not in schema["properties"]  # carried by the envelope
    index = json.loads(first["index.json"])
    assert [(e["type"], e["version"], e["file"]) for e in index["contracts"]] == [
        (TYPE, 1, f"{TYPE}.v1.json"),
        (TYPE, 2, f"{TYPE}.v2.json"),
    ]
    (tmp_path / "notes.md").write_text("kept")
    export_snapshot([PricedIntegrationEvent], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{TYPE}.v1.json", "index.json", "notes.md"]
    )
    assert read_snapshot(tmp_path).schemas == Snapshot.of([PricedIntegrationEvent]).schemas


def test_a_missing_snapshot_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ContractSnapshotError, match="tidings contracts export"):
        read_snapshot(tmp_path / "nothing")


def test_an_upcaster_must_return_what_json_can_carry() -> None:
    """The consumer sends the upcast payload through JSON: a Decimal in it fails there."""

    def to_decimal_cents(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "price_cents": Decimal(1)}

    catalog = ContractCatalog.of(
        [PricedIntegrationEvent, PricedInCentsIntegrationEvent],
        upcasters_of=[context_with(to_decimal_cents)],
    )
    [finding] = check_compatibility(catalog, Snapshot.of([PricedIntegrationEvent])).breaking
    assert finding.rule == "upcaster" and "JSON serializable" in finding.message
