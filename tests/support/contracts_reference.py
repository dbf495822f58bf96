"""Run as a process by tests/acceptance/test_contracts_reference.py: the reference system's
contracts cannot share a process with the test modules that define the same types.

For every contract of ``examples.ecommerce.system``: its committed schema is a valid draft
2020-12 schema and accepts the payloads tidings writes (hypothesis-generated events,
serialised by ``outbox_row`` as the outbox stores them). Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, get_args, get_origin

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker
from pydantic import BaseModel

from tidings.contracts import ContractCatalog, IntegrationEvent, outbox_row
from tidings.contracts.integration_event import ENVELOPE_FIELDS
from tidings.contracts.schema import schema_file_name

EXAMPLES = 25


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


def is_decimal(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        Decimal(value)
    except InvalidOperation:
        return False
    return True


def check(contract: type[IntegrationEvent], snapshot: Path) -> int:
    schema = json.loads((snapshot / schema_file_name(contract.event_type, 1)).read_text())
    Draft202012Validator.check_schema(schema)
    checker = FormatChecker()
    checker.checks("decimal")(is_decimal)
    validator = Draft202012Validator(schema, format_checker=checker)
    written = 0

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(instances(contract))
    def accepted(event: IntegrationEvent) -> None:
        nonlocal written
        row = outbox_row(
            event,
            source="test",
            correlation_id=None,
            causation_id=None,
            created_at=datetime.now(UTC),
        )
        validator.validate(json.loads(row["payload"]))
        written += 1

    accepted()
    return written


def main() -> None:
    snapshot = Path(sys.argv[1])
    catalog = ContractCatalog.from_targets(["examples.ecommerce.system"])
    payloads = {contract.event_type: check(contract, snapshot) for contract in catalog.contracts}
    print(json.dumps(payloads))


if __name__ == "__main__":
    main()
