"""The inbox claim records each delivery's outcome with the claim, on every database.

A micro-batch can hold an id twice (a redelivery arriving beside the first delivery)
and ids the inbox already has: the first delivery of a new id is ``handled``, every
other one ``duplicate``; the records roll back with a failed batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.support.consumer_infra import new_tag, postgres_database
from tidings import BoundedContext
from tidings.consumer.inbox import claim
from tidings.contracts.cloudevents import CloudEvent
from tidings.persistence.tables import handled_records, inbox


@contextlib.contextmanager
def _database(kind: str, folder: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'inbox.db'}"
    else:
        with postgres_database(f"{new_tag()}_claim") as url:
            yield url


def _event(event_id: str) -> CloudEvent:
    return CloudEvent(
        id=event_id,
        source="catalog",
        type="catalog.product.price_changed",
        correlationid=f"corr-{event_id}",
        causationid=None,
    )


def _outcomes(context: BoundedContext) -> list[tuple[str, str]]:
    with context.engine.connect() as connection:
        rows = connection.execute(
            select(handled_records.c.event_id, handled_records.c.outcome).order_by(
                handled_records.c.record_id
            )
        )
        return [(row.event_id, row.outcome) for row in rows]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_a_batch_claims_new_ids_once_and_records_every_delivery(
    kind: str, tmp_path: Path
) -> None:
    with _database(kind, tmp_path) as url:
        context = BoundedContext("basket", database_url=url)
        context.create_tables()
        received = datetime.now(UTC)
        try:
            async with context.transaction() as session:
                assert await claim(session, "basket", [(_event("a"), received)]) == {"a"}

            batch = [(_event(i), received) for i in ("b", "a", "b", "c")]
            async with context.transaction() as session:
                assert await claim(session, "basket", batch) == {"b", "c"}

            with contextlib.suppress(RuntimeError):
                async with context.transaction() as session:
                    await claim(session, "basket", [(_event("d"), received)])
                    raise RuntimeError("a handler failed")

            assert _outcomes(context) == [
                ("a", "handled"),
                ("b", "handled"),
                ("a", "duplicate"),
                ("b", "duplicate"),
                ("c", "handled"),
            ]
            with context.engine.connect() as connection:
                claimed = connection.execute(select(inbox.c.event_id)).scalars()
                assert sorted(claimed) == ["a", "b", "c"]
            with context.engine.connect() as connection:
                record = connection.execute(
                    select(handled_records).where(handled_records.c.event_id == "c")
                ).one()
            assert (record.source, record.event_type, record.correlation_id) == (
                "catalog",
                "catalog.product.price_changed",
                "corr-c",
            )
            assert record.received_at == received
            assert record.handled_at >= received
        finally:
            await context.adispose()
