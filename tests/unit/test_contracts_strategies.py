"""The payload strategies the upcaster check uses generate only what the schema allows."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from jsonschema import Draft202012Validator

from tests.unit.test_contracts_corpus import CORPUS
from tidings.contracts import payload_schema
from tidings.contracts.strategies import payloads

MODELS = {id(m): m for case in CORPUS for m in (case.old, case.new)}


@pytest.mark.parametrize("model", MODELS.values())
def test_generated_payloads_are_valid_under_the_schema_and_the_model(model: type) -> None:
    schema = payload_schema(model)
    validator = Draft202012Validator(schema)

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(payloads(schema))
    def valid(payload: object) -> None:
        validator.validate(payload)
        model.model_validate(payload)  # type: ignore[attr-defined]

    valid()
