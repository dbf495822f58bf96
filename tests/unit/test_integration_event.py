"""IntegrationEvent: frozen pydantic contracts with a stable name, a version and a key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import ClassVar

import pytest
from pydantic import ValidationError

from tidings import DuplicateContractError, IntegrationEvent
from tidings.contracts.registry import default_registry


class PriceChangedIntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = "tests.catalog.price-changed"
    event_version: ClassVar[int] = 2

    product_id: str
    price: Decimal


class StockCountedIntegrationEvent(IntegrationEvent):
    warehouse: str
    product_id: str
    count: int


class NewsletterSentIntegrationEvent(IntegrationEvent):
    subject: str


class ShipmentDelayedIntegrationEvent(IntegrationEvent):
    partition_key_field: ClassVar[str | None] = "carrier"

    shipment_id: str
    carrier: str


def test_a_class_not_named_integration_event_is_refused_with_the_rule() -> None:
    with pytest.raises(TypeError) as refused:

        class ProductUpdated(IntegrationEvent):
            product_id: str

    message = str(refused.value)
    assert "ProductUpdated" in message
    assert "must be named '...IntegrationEvent'" in message


def test_type_name_defaults_to_the_class_name_and_version_to_one() -> None:
    assert StockCountedIntegrationEvent.event_type == "StockCountedIntegrationEvent"
    assert StockCountedIntegrationEvent.event_version == 1
    assert PriceChangedIntegrationEvent.event_type == "tests.catalog.price-changed"
    assert PriceChangedIntegrationEvent.event_version == 2


def test_contracts_register_themselves_by_type_and_version() -> None:
    assert (
        default_registry.resolve("tests.catalog.price-changed", 2) is PriceChangedIntegrationEvent
    )


def test_a_second_class_claiming_the_same_type_and_version_is_refused() -> None:
    with pytest.raises(DuplicateContractError) as refused:

        class OtherPriceChangedIntegrationEvent(IntegrationEvent):
            event_type: ClassVar[str] = "tests.catalog.price-changed"
            event_version: ClassVar[int] = 2

            product_id: str

    assert isinstance(refused.value, TypeError)
    assert "already taken by" in str(refused.value)
    assert "PriceChangedIntegrationEvent" in str(refused.value)


def test_the_same_type_name_with_a_new_version_is_a_new_contract() -> None:
    class PriceChangedV3IntegrationEvent(IntegrationEvent):
        event_type: ClassVar[str] = "tests.catalog.price-changed"
        event_version: ClassVar[int] = 3

        product_id: str
        price: Decimal
        currency: str

    assert default_registry.resolve("tests.catalog.price-changed", 3) is (
        PriceChangedV3IntegrationEvent
    )


def test_a_version_that_is_not_a_positive_integer_is_refused() -> None:
    with pytest.raises(TypeError, match="positive integer"):

        class BrokenVersionIntegrationEvent(IntegrationEvent):
            event_version: ClassVar[int] = 0


def test_the_partition_key_is_the_first_field_ending_in_id() -> None:
    event = StockCountedIntegrationEvent(warehouse="w-1", product_id="p-9", count=3)

    assert event.partition_key() == "p-9"


def test_the_partition_key_is_the_declared_field_when_there_is_one() -> None:
    event = ShipmentDelayedIntegrationEvent(shipment_id="s-1", carrier="acme")

    assert event.partition_key() == "acme"


def test_without_an_id_field_the_partition_key_is_the_event_id() -> None:
    event = NewsletterSentIntegrationEvent(subject="Spring sale")

    assert event.partition_key() == str(event.event_id)


def test_declaring_a_partition_key_field_that_does_not_exist_is_refused() -> None:
    with pytest.raises(TypeError, match="partition_key_field names 'tenant'"):

        class MisKeyedIntegrationEvent(IntegrationEvent):
            partition_key_field: ClassVar[str | None] = "tenant"

            order_id: str


def test_integration_events_are_immutable() -> None:
    event = PriceChangedIntegrationEvent(product_id="p-1", price=Decimal("1.50"))

    with pytest.raises(ValidationError):
        event.price = Decimal("2")  # type: ignore[misc]


def test_occurred_at_defaults_to_aware_utc_and_is_normalised_when_given() -> None:
    default = PriceChangedIntegrationEvent(product_id="p-1", price=Decimal("1"))
    given = PriceChangedIntegrationEvent(
        product_id="p-1",
        price=Decimal("1"),
        occurred_at=datetime(2024, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))),
    )

    assert default.occurred_at.tzinfo is UTC
    assert given.occurred_at == datetime(2024, 1, 1, 10, 0, tzinfo=UTC)
    assert given.occurred_at.tzinfo is UTC
    assert default.event_id.version == 7


def test_unknown_fields_in_a_payload_are_ignored() -> None:
    event = PriceChangedIntegrationEvent.model_validate(
        {"product_id": "p-1", "price": "3.20", "added_in_a_later_version": True}
    )

    assert event.price == Decimal("3.20")
