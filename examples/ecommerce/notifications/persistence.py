"""The mailbox table."""

from __future__ import annotations

from sqlalchemy import Column, MetaData, String, Table, Text
from sqlalchemy.orm import Session, registry

from examples.ecommerce.notifications.domain import Email

metadata = MetaData()
mailbox = Table(
    "mailbox",
    metadata,
    Column("order_id", String(36), primary_key=True),
    Column("to", String(200), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("body", Text, nullable=False),
)
registry().map_imperatively(Email, mailbox)


class Mailbox:
    def __init__(self, session: Session) -> None:
        self._session = session

    def send(self, email: Email) -> None:
        self._session.add(email)
