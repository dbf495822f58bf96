"""The pure domain layer: depends on the standard library only."""

from tidings.domain.aggregate import AggregateRoot
from tidings.domain.events import DomainEvent, as_utc
from tidings.domain.ids import uuid7
from tidings.domain.records import FrozenRecord

__all__ = ["AggregateRoot", "DomainEvent", "FrozenRecord", "as_utc", "uuid7"]
