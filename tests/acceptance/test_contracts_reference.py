"""The reference system's contracts: the committed snapshot is current, and its schemas are
valid draft 2020-12 schemas accepting every payload tidings writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker
from pydantic import BaseModel

from tidings.contracts import ContractCatalog, IntegrationEvent, Snapshot, outbox_row
from tidings.contracts.integration_event import ENVELOPE_FIELDS
from tidings.contracts.schema import INDEX_FILE

SNAPSHOT = Path(__file__).resolve().parents[2] / "examples" / "ecommerce" / "contracts"
CATALOG = ContractCatalog.from_targets(["examples.ecommerce.system"])


def test_the_committed_snapshot_is_current() -> None:
    expected = Snapshot.of(CATALOG.contracts).files()
    committed = {path.name: path.read_text() for path in SNAPSHOT.glob("*.json")}
    assert committed == expected, (
        "examples/ecommerce/contracts is stale: run `tidings contracts export "
        "examples.ecommerce.system --out examples/ecommerce/contracts` (after `tidings "
        "contracts check` says the change is compatible)"
    )
    assert len(json.loads(expected[INDEX_FILE])["contracts"]) == 6


@pytest.mark.parametrize("contract", CATALOG.contracts, ids=lambda c: c.event_type)
def test_the_schema_accepts_the_payloads_tidings_writes(
    contract: type[IntegrationEvent],
) -> None:
    schema = json.loads((SNAPSHOT / f"{contract.event_type}.v1.json").read_text())
    Draft202012Validator.check_schema(schema)
    checker = FormatChecker()
    checker.checks("decimal")(_is_decimal)
    validator = Draft202012Validator(schema, format_checker=checker)

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(instances(contract))
    def written(event: IntegrationEvent) -> None:
        row = outbox_row(
            event,
            source="test",
            correlation_id=None,
            causation_id=None,
            created_at=datetime.now(UTC),
        )
        validator.validate(json.loads(row["payload"]))

    written()


def instances(model: type[BaseModel]) -> st.SearchStrategy[Any]:
    """Instances of a model with every field generated (finite decimals: pydantic refuses
    infinities, and ``st.builds`` would offer them)."""
    return st.builds(
        model,
        **{
            name: values_of(field.annotation)
            for name, field in model.model_fields.items()
            if name not in ENVELOPE_FIELDS
        },
    )


def values_of(annotation: Any) -> st.SearchStrategy[Any]:
    if annotation is Decimal:
        return st.decimals(allow_nan=False, allow_infinity=False)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return instances(annotation)
    if get_origin(annotation) is list:
        return st.lists(values_of(get_args(annotation)[0]), max_size=3)
    return st.from_type(annotation)


def _is_decimal(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        Decimal(value)
    except InvalidOperation:
        return False
    return True
