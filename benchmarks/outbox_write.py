"""A use case writing one business row and publishing one integration event.

tidings: ``with ctx.transaction()`` + an SQLAlchemy insert + ``publish(event)``.
Baseline: the same business insert and the same outbox row written by one
hand-written INSERT, in the same session and transaction. Both serialise the same
event; the ratio is tidings' time over the baseline's, per committed use case.

    python benchmarks/outbox_write.py            # SQLite file + PostgreSQL, MariaDB if reachable
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import Column, MetaData, Numeric, String, Table, insert, text
from sqlalchemy.orm import Session

from _harness import compare, emit, mariadb_database, postgres_database, reset_tables
from tidings import BoundedContext, IntegrationEvent
from tidings.domain.ids import uuid7

business = MetaData()
products = Table(
    "bench_products",
    business,
    Column("id", String(36), primary_key=True),
    Column("name", String(100)),
    Column("price", Numeric(10, 2)),
)
insert_product = insert(products)

HAND_WRITTEN = text(
    "INSERT INTO tidings_outbox (event_id, event_type, event_version, source, "
    "partition_key, payload, occurred_at, created_at, correlation_id, causation_id) "
    "VALUES (:event_id, :event_type, :event_version, :source, :partition_key, :payload, "
    ":occurred_at, :created_at, :correlation_id, :causation_id)"
)


class ProductUpdatedIntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = "bench.product.updated"
    product_id: str
    name: str
    price: Decimal


def _row() -> dict[str, Any]:
    return {"id": str(uuid7()), "name": "Lamp", "price": Decimal("9.99")}


def measure(context: BoundedContext, *, iterations: int, rounds: int) -> float:
    context.create_tables()
    business.create_all(context.engine)
    publish = context.integration_events.publish
    naive = context.engine.dialect.name != "postgresql"

    def with_tidings(count: int) -> None:
        for _ in range(count):
            row = _row()
            with context.transaction() as session:
                session.execute(insert_product, row)
                publish(
                    ProductUpdatedIntegrationEvent(
                        product_id=row["id"], name=row["name"], price=row["price"]
                    )
                )

    def hand_written(count: int) -> None:
        for _ in range(count):
            row = _row()
            with Session(context.engine) as session, session.begin():
                session.execute(insert_product, row)
                event = ProductUpdatedIntegrationEvent(
                    product_id=row["id"], name=row["name"], price=row["price"]
                )
                now = datetime.now(UTC)
                occurred = event.occurred_at
                session.execute(
                    HAND_WRITTEN,
                    {
                        "event_id": str(event.event_id),
                        "event_type": event.event_type,
                        "event_version": event.event_version,
                        "source": context.name,
                        "partition_key": event.product_id,
                        "payload": event.model_dump_json(exclude={"event_id", "occurred_at"}),
                        "occurred_at": occurred.replace(tzinfo=None) if naive else occurred,
                        "created_at": now.replace(tzinfo=None) if naive else now,
                        "correlation_id": str(uuid7()),
                        "causation_id": None,
                    },
                )

    best = compare(
        {"hand_written": hand_written, "tidings": with_tidings},
        iterations=iterations,
        rounds=rounds,
    )
    return best["tidings"] / best["hand_written"]


def main() -> None:
    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as folder:
        sqlite = BoundedContext("bench", database_url=f"sqlite:///{Path(folder)}/bench.db")
        figures["ratio_sqlite"] = round(measure(sqlite, iterations=400, rounds=7), 3)
        sqlite.dispose()
    url = postgres_database()
    if url is not None:
        reset_tables(url, "bench_products")
        postgres = BoundedContext("bench", database_url=url)
        figures["ratio_postgres"] = round(measure(postgres, iterations=300, rounds=7), 3)
        postgres.dispose()
    url = mariadb_database()
    if url is not None:
        reset_tables(url, "bench_products")
        mariadb = BoundedContext("bench", database_url=url)
        figures["ratio_mariadb"] = round(measure(mariadb, iterations=300, rounds=7), 3)
        mariadb.dispose()
    for key, value in figures.items():
        print(f"{key}: {value} (target <= 1.15)")
    emit(figures)


if __name__ == "__main__":
    main()
