"""Which integration event handlers a consuming context runs, by contract."""

from __future__ import annotations

import inspect
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tidings.application.introspection import handled_types, handler_id
from tidings.contracts.integration_event import IntegrationEvent


@dataclass(frozen=True, slots=True)
class IntegrationSubscription:
    handler_id: str
    call: Callable[[Any], Any]
    is_async: bool
    #: ``handle_batch`` if the handler has one (see IntegrationEventHandler).
    call_batch: Callable[[Any], Any] | None = None
    batch_is_async: bool = False


class IntegrationSubscriptions:
    """Handlers by contract class, plus the (type, versions) the group must receive."""

    def __init__(self, handlers: Iterable[object]) -> None:
        self.by_contract: dict[type[IntegrationEvent], list[IntegrationSubscription]] = defaultdict(
            list
        )
        self.versions: dict[str, set[int]] = defaultdict(set)
        for handler in handlers:
            method = handler.handle  # type: ignore[attr-defined]
            batch = getattr(handler, "handle_batch", None)
            subscription = IntegrationSubscription(
                handler_id(handler),
                method,
                inspect.iscoroutinefunction(method),
                batch,
                inspect.iscoroutinefunction(batch),
            )
            for contract in handled_types(handler, IntegrationEvent, "IntegrationEventHandler"):
                self.by_contract[contract].append(subscription)
                self.versions[contract.event_type].add(contract.event_version)  # type: ignore[attr-defined]

    @property
    def event_types(self) -> set[str]:
        return set(self.versions)

    def __bool__(self) -> bool:
        return bool(self.by_contract)
