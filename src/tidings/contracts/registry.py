"""Integration event contracts by (type name, version)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from tidings.errors import DuplicateContractError, UnknownContractError

if TYPE_CHECKING:
    from tidings.contracts.integration_event import IntegrationEvent


class ContractRegistry:
    """Maps ``(event_type, event_version)`` to the class that reads that payload.

    Every ``IntegrationEvent`` subclass registers itself in :data:`default_registry`
    when defined. Two different classes claiming the same pair is an error at the
    second definition.
    """

    def __init__(self) -> None:
        self._contracts: dict[tuple[str, int], type[IntegrationEvent]] = {}

    def register(self, contract: type[IntegrationEvent]) -> None:
        key = (contract.event_type, contract.event_version)
        existing = self._contracts.get(key)
        if existing is not None and _qualified(existing) != _qualified(contract):
            raise DuplicateContractError(
                f"{_qualified(contract)} declares event_type={key[0]!r} "
                f"event_version={key[1]}, already taken by {_qualified(existing)}; give the "
                "new contract another type name or a higher version"
            )
        self._contracts[key] = contract

    def resolve(self, event_type: str, version: int) -> type[IntegrationEvent]:
        contract = self._contracts.get((event_type, version))
        if contract is None:
            raise UnknownContractError(event_type, version)
        return contract

    def get(self, event_type: str, version: int) -> type[IntegrationEvent] | None:
        return self._contracts.get((event_type, version))

    def __iter__(self) -> Iterator[type[IntegrationEvent]]:
        return iter(list(self._contracts.values()))

    def __len__(self) -> int:
        return len(self._contracts)


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


default_registry = ContractRegistry()
