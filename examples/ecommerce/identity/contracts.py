"""What Identity tells other contexts."""

from __future__ import annotations

from typing import ClassVar

from tidings import IntegrationEvent


class UserRegisteredIntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = "identity.user.registered"
    event_version: ClassVar[int] = 1

    user_id: str
    name: str
    email: str
