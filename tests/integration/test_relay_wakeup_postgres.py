"""The relay's wake-up on PostgreSQL: LISTEN on a connection of its own, closed on stop."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from tidings.outbox.wakeup import Wakeup

pytestmark = pytest.mark.postgres


async def test_stopping_closes_the_listening_connection(postgres_url: str) -> None:
    wakeup = Wakeup(make_url(postgres_url))
    await wakeup.start()
    connection = wakeup._connection
    assert wakeup.listening
    await wakeup.stop()
    assert not wakeup.listening
    assert connection is not None and connection.is_closed()
