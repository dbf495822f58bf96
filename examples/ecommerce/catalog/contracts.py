"""What Catalog tells other contexts: generic, stable contracts."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from tidings import IntegrationEvent


class ProductUpdatedIntegrationEvent(IntegrationEvent):
    """The observable state of a product, for every context that keeps a copy."""

    event_type: ClassVar[str] = "catalog.product.updated"
    event_version: ClassVar[int] = 1

    product_id: str
    name: str
    price: Decimal
    on_sale: bool
    recommended_with: list[str]

    @classmethod
    def from_product_details(
        cls, product: ProductView, details: ProductDetails
    ) -> ProductUpdatedIntegrationEvent:
        return cls(
            product_id=product.id,
            name=product.name,
            price=product.price,
            on_sale=product.on_sale,
            recommended_with=details.recommended_with,
        )


class ProductPriceChangedIntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = "catalog.product.price_changed"
    event_version: ClassVar[int] = 1

    product_id: str
    price: Decimal


# Read models the queries return (what the publishing handler asks for).
class ProductView:
    def __init__(self, id: str, name: str, price: Decimal, on_sale: bool) -> None:
        self.id, self.name, self.price, self.on_sale = id, name, price, on_sale


class ProductDetails:
    def __init__(self, recommended_with: list[str]) -> None:
        self.recommended_with = recommended_with
