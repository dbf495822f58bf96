"""Basket publishes no integration events; it consumes Catalog's."""

from examples.ecommerce.catalog.contracts import (
    ProductPriceChangedIntegrationEvent,
    ProductUpdatedIntegrationEvent,
)

__all__ = ["ProductPriceChangedIntegrationEvent", "ProductUpdatedIntegrationEvent"]
