"""Identity: the users other contexts keep local copies of."""

from __future__ import annotations

from tidings.domain import AggregateRoot, DomainEvent


class UserRegistered(DomainEvent):
    user_id: str
    name: str
    email: str


class User(AggregateRoot):
    def __init__(self, id: str, name: str, email: str) -> None:
        self.id = id
        self.name = name
        self.email = email

    @classmethod
    def register(cls, id: str, name: str, email: str) -> User:
        user = cls(id, name, email)
        user.record(UserRegistered(user_id=id, name=name, email=email))
        return user
