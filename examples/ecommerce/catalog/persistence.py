"""Catalog's tables, mappings, repository and query handlers."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, MetaData, Numeric, String, Table, select
from sqlalchemy.orm import Session, registry

from examples.ecommerce.catalog.domain import Product

metadata = MetaData()
products = Table(
    "products",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("price", Numeric(12, 2), nullable=False),
    Column("on_sale", Boolean, nullable=False),
)
product_projection = Table(
    "product_projection",
    metadata,
    Column("product_id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("price", Numeric(12, 2), nullable=False),
)
recommendations = Table(
    "recommendations",
    metadata,
    Column("product_id", String(36), primary_key=True),
    Column("recommended_with", String(2000), nullable=False),
)
registry().map_imperatively(Product, products)


class ProductRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, product: Product) -> None:
        self._session.add(product)

    def find(self, product_id: str) -> Product:
        product = self._session.get(Product, product_id)
        if product is None:
            raise LookupError(f"no product {product_id}")
        return product

    def save(self, product: Product) -> None:
        self._session.add(product)

    def on_sale_ids(self) -> list[str]:
        return list(self._session.scalars(select(products.c.id).where(products.c.on_sale)))
