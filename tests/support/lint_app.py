"""A context that makes the articles' naming mistakes, for ``tidings lint`` tests.

Imported only by the ``tidings lint`` subprocess: its badly named domain event must not
leak into other tests' view of every DomainEvent subclass.
"""

from __future__ import annotations

from typing import ClassVar

from tidings import BoundedContext, DomainEvent, DomainEventHandler, IntegrationEvent


class ProductUpdated(DomainEvent):  # too generic for a domain event
    product_id: str


class ProductPutOnSale(DomainEvent):
    product_id: str


class ProductPutOnSaleIntegrationEvent(IntegrationEvent):  # too specific for a contract
    event_type: ClassVar[str] = "tests.lint.product.put-on-sale"

    product_id: str


class PublishProductPutOnSaleIntegrationEventOnProductPutOnSale(DomainEventHandler):
    publishes = (ProductPutOnSaleIntegrationEvent,)

    def handle(self, event: ProductPutOnSale) -> None: ...


class ProjectProductOnProductUpdated(DomainEventHandler):
    def handle(self, event: ProductUpdated) -> None: ...


context = BoundedContext("shop")
context.subscribe(PublishProductPutOnSaleIntegrationEventOnProductPutOnSale())
context.subscribe(ProjectProductOnProductUpdated())
