"""Do registered upcasters turn every old payload into a valid new one? Hypothesis says.

Payloads of the old version are generated from its JSON Schema (``hypothesis-jsonschema``,
installed by the ``contracts`` extra); each is upcast and read with the new contract class
exactly as the consumer reads it (``model_validate``, unknown fields ignored).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from tidings.contracts.integration_event import IntegrationEvent
from tidings.contracts.upcasting import Upcaster
from tidings.errors import MissingExtraError

DEFAULT_EXAMPLES = 50


def first_failure(
    old_schema: Mapping[str, Any],
    upcaster: Upcaster,
    new_contract: type[IntegrationEvent],
    *,
    examples: int = DEFAULT_EXAMPLES,
) -> str | None:
    """``None`` when every generated payload upcasts into a valid ``new_contract``;
    otherwise the (shrunk) failing payload and the error, as text."""
    try:
        from hypothesis import HealthCheck, Phase, given, settings
        from hypothesis import strategies as st
        from hypothesis_jsonschema import from_schema
    except ImportError as exc:
        raise MissingExtraError("checking upcasters", "contracts") from exc

    decimals = st.decimals(allow_nan=False, allow_infinity=False, places=4).map(str)
    schema = {k: v for k, v in old_schema.items() if not k.startswith("x-tidings-")}
    strategy = from_schema(schema, custom_formats={"decimal": decimals})
    failures: list[str] = []

    @settings(
        max_examples=examples,
        database=None,
        derandomize=True,
        deadline=None,
        phases=(Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def upcasts(payload: dict[str, Any]) -> None:
        try:
            new_contract.model_validate(upcaster(copy.deepcopy(payload)))
        except Exception as error:
            failures.append(f"{json.dumps(payload, default=str)[:300]} -> {error!r}"[:600])
            raise

    try:
        upcasts()
    except Exception:
        return failures[-1] if failures else "the upcaster failed"
    return None
