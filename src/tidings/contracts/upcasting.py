"""Contract evolution on the consumer side: turning version N payloads into N+1."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from tidings.errors import ConfigurationError

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class Upcasters:
    """Registered ``(event type, from version) → function`` steps.

    A consumer whose handlers are written against version N+1 still reads version N
    messages: each step turns a version-v payload (a dict) into version v+1.
    """

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcaster] = {}

    def register(self, event_type: str, from_version: int, upcaster: Upcaster) -> None:
        key = (event_type, from_version)
        if key in self._steps:
            raise ConfigurationError(
                f"{event_type} v{from_version} already has an upcaster; one step per version"
            )
        self._steps[key] = upcaster

    def upcast(
        self, event_type: str, version: int, payload: dict[str, Any], wanted: Collection[int]
    ) -> tuple[int, dict[str, Any]]:
        """Apply steps from ``version`` until a version in ``wanted`` (or no step is left)."""
        while version not in wanted:
            step = self._steps.get((event_type, version))
            if step is None:
                break
            payload = step(payload)
            version += 1
        return version, payload

    def steps(self) -> dict[tuple[str, int], Upcaster]:
        """Every registered step, by ``(event type, from version)``."""
        return dict(self._steps)

    def __bool__(self) -> bool:
        return bool(self._steps)
