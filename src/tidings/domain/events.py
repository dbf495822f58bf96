"""Domain events: the bounded context's internal dialogue."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any, ClassVar, dataclass_transform
from uuid import UUID

from tidings.domain import clock
from tidings.domain.ids import uuid7
from tidings.domain.records import FrozenRecord

_INTEGRATION_SUFFIX = "IntegrationEvent"


def as_utc(moment: datetime) -> datetime:
    """Normalise a datetime to aware UTC; a naive value is taken as local time.

    ``datetime.now()`` is naive local time, so reading naive values as local time is
    what makes ``occurred_at=datetime.now()`` mean what its author meant.
    """
    if moment.tzinfo is UTC:
        return moment
    try:
        return moment.astimezone(UTC)
    except OverflowError as error:  # e.g. year 1 at +01:00 falls before datetime.min
        raise ValueError(f"{moment.isoformat()} cannot be expressed in UTC") from error


@dataclass_transform(frozen_default=True)
class DomainEvent(FrozenRecord):
    """Base of domain events: specific, past-tense facts handled inside the context.

    Subclasses are frozen dataclasses automatically (writing ``@dataclass(frozen=True)``
    as well is harmless)::

        class ProductPutOnSale(DomainEvent):
            product_id: str

        ProductPutOnSale(product_id="p-1", occurred_at=datetime.now())

    ``event_id`` (time-ordered UUID) and ``occurred_at`` (aware UTC) are filled in when
    not given; they are keyword-only so subclasses may declare fields without defaults.
    """

    __tidings_kind__: ClassVar[str] = "domain"

    # KW_ONLY rather than field(kw_only=True): type checkers understand it on a
    # dataclass_transform base, so subclass fields without defaults type-check too.
    _: dataclasses.KW_ONLY
    event_id: UUID = dataclasses.field(default_factory=uuid7)
    occurred_at: datetime = dataclasses.field(default_factory=clock.utc_now)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        if cls.__name__.endswith(_INTEGRATION_SUFFIX):
            raise TypeError(
                f"{cls.__name__}: a DomainEvent must not be named '...{_INTEGRATION_SUFFIX}'. "
                "Domain events are specific past-tense facts of the domain "
                "(ProductPutOnSale); derive from tidings.IntegrationEvent for contracts "
                "published to other contexts."
            )
        super().__init_subclass__(**kwargs)

    def __post_init__(self) -> None:
        occurred_at = self.occurred_at
        if occurred_at.tzinfo is not UTC:
            object.__setattr__(self, "occurred_at", as_utc(occurred_at))
