"""An admitted delivery on its way through the handlers, and a failure that names it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from tidings.contracts.cloud_event import CloudEvent
from tidings.contracts.integration_event import IntegrationEvent
from tidings.transports.base import Delivery


@dataclass(slots=True)
class Item:
    """A delivery decoded into its CloudEvent and contract, with its failed attempts."""

    delivery: Delivery
    event: CloudEvent
    contract: IntegrationEvent
    failures: int = 0
    first_failed_at: datetime | None = None
    last_error: BaseException | None = None
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def key(self) -> str:
        """The partition key whose order the consumer keeps (the event id if none)."""
        return self.event.subject or self.event.id


class HandlerFailed(Exception):
    """A handler raised inside a micro-batch: the failure belongs to ``item``."""

    def __init__(self, item: Item, error: Exception) -> None:
        super().__init__(f"{item.event.type} {item.event.id}: {error!r}")
        self.item = item
        self.error = error
