"""Identity's tables and mappings (infrastructure: the domain knows nothing of it)."""

from __future__ import annotations

from sqlalchemy import Column, MetaData, String, Table, select
from sqlalchemy.orm import Session, registry

from examples.ecommerce.identity.domain import User

metadata = MetaData()
users = Table(
    "users",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("email", String(200), nullable=False),
)
registry().map_imperatively(User, users)


class UserRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, user: User) -> None:
        self._session.add(user)

    def count(self) -> int:
        return len(self._session.scalars(select(User)).all())
