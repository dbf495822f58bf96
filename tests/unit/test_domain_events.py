"""DomainEvent: frozen dataclasses with time-ordered ids, UTC times and a naming rule."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

import pytest

from tidings import DomainEvent


class ProductPutOnSale(DomainEvent):
    product_id: str


class ProductDiscontinued(DomainEvent):
    product_id: str
    reason: str = "end of life"


@pytest.fixture
def local_time_is_kolkata(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time UTC+05:30, so local-time mistakes cannot hide behind a UTC machine."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_event_id_and_occurred_at_are_filled_in_when_not_given() -> None:
    before = datetime.now(UTC)
    event = ProductPutOnSale(product_id="p-1")

    assert isinstance(event.event_id, UUID)
    assert event.event_id.version == 7
    assert event.occurred_at.tzinfo is UTC
    assert before <= event.occurred_at <= datetime.now(UTC)


def test_event_ids_sort_in_creation_order_even_within_one_millisecond() -> None:
    ids = [ProductPutOnSale(product_id="p").event_id for _ in range(2000)]

    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_the_articles_naive_datetime_now_is_read_as_local_time_and_stored_as_utc(
    local_time_is_kolkata: None,
) -> None:
    event = ProductPutOnSale(product_id="p-1", occurred_at=datetime.now())

    assert event.occurred_at.tzinfo is UTC
    assert abs(event.occurred_at - datetime.now(UTC)) < timedelta(seconds=5)


def test_a_naive_datetime_is_converted_from_local_time(local_time_is_kolkata: None) -> None:
    event = ProductPutOnSale(product_id="p-1", occurred_at=datetime(2024, 3, 1, 12, 0))

    assert event.occurred_at == datetime(2024, 3, 1, 6, 30, tzinfo=UTC)
    assert event.occurred_at.tzinfo is UTC


def test_an_aware_datetime_in_another_zone_is_converted_to_utc() -> None:
    new_york_winter = timezone(timedelta(hours=-5))
    moment = datetime(2024, 1, 1, 9, 0, tzinfo=new_york_winter)

    event = ProductPutOnSale(product_id="p-1", occurred_at=moment)

    assert event.occurred_at == datetime(2024, 1, 1, 14, 0, tzinfo=UTC)
    assert event.occurred_at.tzinfo is UTC


def test_an_explicit_event_id_is_kept() -> None:
    event_id = UUID("01900000-0000-7000-8000-000000000001")

    assert ProductPutOnSale(product_id="p-1", event_id=event_id).event_id == event_id


def test_subclass_fields_may_be_positional_because_the_base_fields_are_keyword_only() -> None:
    event = ProductDiscontinued("p-1")

    assert (event.product_id, event.reason) == ("p-1", "end of life")


def test_events_are_immutable_values() -> None:
    event = ProductPutOnSale(product_id="p-1")

    with pytest.raises(dataclasses.FrozenInstanceError, match="immutable"):
        event.product_id = "p-2"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del event.product_id
    assert event == dataclasses.replace(event)
    assert hash(event) == hash(dataclasses.replace(event))


def test_an_explicit_frozen_dataclass_decorator_is_harmless() -> None:
    @dataclasses.dataclass(frozen=True)
    class ProductRestocked(DomainEvent):
        product_id: str
        quantity: int

    event = ProductRestocked(product_id="p-1", quantity=3)

    assert event.quantity == 3
    assert event.occurred_at.tzinfo is UTC
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.quantity = 4  # type: ignore[misc]


def test_events_can_specialise_other_events() -> None:
    class ProductPutOnFlashSale(ProductPutOnSale):
        discount: int

    event = ProductPutOnFlashSale(product_id="p-1", discount=30)

    assert isinstance(event, ProductPutOnSale)
    assert (event.product_id, event.discount) == ("p-1", 30)


def test_a_domain_event_named_like_an_integration_event_is_refused_with_the_rule() -> None:
    with pytest.raises(TypeError) as refused:

        class ProductUpdatedIntegrationEvent(DomainEvent):
            product_id: str

    message = str(refused.value)
    assert "ProductUpdatedIntegrationEvent" in message
    assert "must not be named '...IntegrationEvent'" in message
    assert "tidings.IntegrationEvent" in message


def test_a_moment_that_cannot_be_expressed_in_utc_is_a_value_error() -> None:
    from tidings.domain.events import as_utc

    edge = datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    with pytest.raises(ValueError, match="cannot be expressed in UTC"):
        as_utc(edge)
