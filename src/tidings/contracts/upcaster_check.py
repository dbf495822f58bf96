"""Do registered upcasters turn every old payload into a valid new one? Hypothesis says.

Payloads of the old version are generated from its JSON Schema
(:mod:`tidings.contracts.strategies`, Hypothesis from the ``contracts`` extra); each is
upcast, turned into JSON and back, and read with the new contract class as the consumer
reads it (``model_validate``, unknown fields ignored).
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

        from tidings.contracts.strategies import payloads
    except ImportError as exc:
        raise MissingExtraError("checking upcasters", "contracts") from exc

    strategy = payloads(old_schema)
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
            # As the consumer does: the upcast payload goes back to JSON, then is read.
            upcast = json.loads(json.dumps(upcaster(copy.deepcopy(payload))))
            new_contract.model_validate(upcast)
        except Exception as error:
            failures.append(f"{json.dumps(payload, default=str)[:300]} -> {error!r}"[:600])
            raise

    try:
        upcasts()
    except Exception as error:
        if not failures:  # Hypothesis itself gave up: the schema is the problem
            return f"no payload could be generated from the old schema ({error!r})"[:600]
        return failures[-1]
    return None
