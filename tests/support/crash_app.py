"""A tiny context whose after-commit handler can kill its own process, for crash tests.

The parent test and the child process (``python -m tests.support.crash_after_commit``)
both import this module, so the durable after-commit work the child leaves behind
names a handler the parent has subscribed too.
"""

from __future__ import annotations

import os
import signal

from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select

from tidings import BoundedContext, DomainEvent, DomainEventHandler, UseCase

CRASH_ENV = "TIDINGS_TEST_CRASH_AFTER_COMMIT"

metadata = MetaData()
shipments = Table(
    "support_shipments",
    metadata,
    Column("parcel_id", String(36), primary_key=True),
)
# No unique constraint on purpose: a second run of the handler must show as a second row.
notifications = Table(
    "support_notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("parcel_id", String(36), nullable=False),
)


class ParcelShipped(DomainEvent):
    parcel_id: str


class ShipParcel(UseCase):
    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def execute(self, parcel_id: str) -> None:
        self._context.session.execute(insert(shipments).values(parcel_id=parcel_id))
        self._context.domain_events.publish(ParcelShipped(parcel_id=parcel_id))


class NotifyRecipientOnParcelShipped(DomainEventHandler):
    """Writes its effect, then dies before completing when the crash variable is set."""

    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def handle(self, event: ParcelShipped) -> None:
        self._context.session.execute(insert(notifications).values(parcel_id=event.parcel_id))
        if os.environ.get(CRASH_ENV):
            os.kill(os.getpid(), signal.SIGKILL)


def build(database_url: str) -> BoundedContext:
    """The shipping context with its tables created and its after-commit handler subscribed."""
    context = BoundedContext("shipping", database_url=database_url)
    context.create_tables()
    metadata.create_all(context.engine)
    context.subscribe(NotifyRecipientOnParcelShipped(context), after_commit=True)
    return context


def notification_count(context: BoundedContext, parcel_id: str) -> int:
    query = select(func.count()).where(notifications.c.parcel_id == parcel_id)
    with context.engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def shipment_count(context: BoundedContext, parcel_id: str) -> int:
    query = select(func.count()).where(shipments.c.parcel_id == parcel_id)
    with context.engine.connect() as connection:
        return int(connection.execute(query).scalar_one())
