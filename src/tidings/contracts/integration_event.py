"""Integration events: the context's asynchronous API, stable versioned contracts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tidings.domain import clock
from tidings.domain.events import as_utc
from tidings.domain.ids import uuid7

_SUFFIX = "IntegrationEvent"
# Carried by the CloudEvents envelope (id, time), not repeated in the payload.
ENVELOPE_FIELDS = frozenset({"event_id", "occurred_at"})


class IntegrationEvent(BaseModel):
    """Base of integration events: frozen pydantic models with a stable name and version.

    ::

        class ProductUpdatedIntegrationEvent(IntegrationEvent):
            event_type: ClassVar[str] = "catalog.product.updated"
            event_version: ClassVar[int] = 1

            product_id: str
            price: Decimal

    ``event_type`` defaults to the class name and ``event_version`` to 1; declare them
    explicitly once other contexts depend on the contract, so renaming the class cannot
    break them. The partition key (per-key ordering) is the field named by
    ``partition_key_field``, else the first field ending in ``_id``, else the event id.
    Readers are tolerant: unknown fields in a payload are ignored.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    __tidings_kind__: ClassVar[str] = "integration"
    event_type: ClassVar[str] = "IntegrationEvent"
    event_version: ClassVar[int] = 1
    partition_key_field: ClassVar[str | None] = None

    event_id: UUID = Field(default_factory=uuid7)
    occurred_at: datetime = Field(default_factory=clock.utc_now)

    @field_validator("occurred_at")
    @classmethod
    def _normalise_occurred_at(cls, value: datetime) -> datetime:
        return as_utc(value)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if not cls.__name__.endswith(_SUFFIX):
            raise TypeError(
                f"{cls.__name__}: an IntegrationEvent must be named '...{_SUFFIX}' "
                "(ProductUpdatedIntegrationEvent) so contracts stand apart from domain "
                "events in code"
            )
        if "event_type" not in cls.__dict__:
            cls.event_type = cls.__name__
        if "event_version" not in cls.__dict__:
            cls.event_version = 1
        if not isinstance(cls.event_version, int) or cls.event_version < 1:
            raise TypeError(f"{cls.__name__}.event_version must be a positive integer")
        cls.__tidings_key_field__ = _partition_key_field(cls)
        from tidings.contracts.registry import default_registry

        default_registry.register(cls)

    def partition_key(self) -> str:
        """The key whose events are delivered in commit order (an aggregate id)."""
        field = type(self).__tidings_key_field__
        if field is None:
            return str(self.event_id)
        return str(getattr(self, field))

    __tidings_key_field__: ClassVar[str | None] = None


def _partition_key_field(cls: type[IntegrationEvent]) -> str | None:
    fields = [name for name in cls.model_fields if name not in ENVELOPE_FIELDS]
    explicit = cls.partition_key_field
    if explicit is not None:
        if explicit not in fields:
            raise TypeError(
                f"{cls.__name__}.partition_key_field names {explicit!r}, which is not one of "
                f"its fields ({', '.join(fields) or 'none'})"
            )
        return explicit
    return next((name for name in fields if name.endswith("_id")), None)
