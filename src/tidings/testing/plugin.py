"""The pytest plugin of tidings.testing, registered through the ``pytest11`` entry point.

Fixtures:

- ``tidings_broker_url``: a ``memory://`` broker of the test's own, forgotten after it.
- ``tidings_context``: a factory ``tidings_context(name, *, database_url=None,
  broker_url=None, **options)`` of bounded contexts whose tables exist, each on a SQLite
  file of the test's own unless a URL is given, all sharing ``tidings_broker_url``
  unless told otherwise; their pools close after the test.
- ``tidings_clock``: :func:`tidings.testing.deterministic` for the test's duration.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tidings.domain.ids import uuid7
from tidings.testing.determinism import TestClock, deterministic

if TYPE_CHECKING:
    from tidings.context import BoundedContext


@pytest.fixture
def tidings_broker_url() -> Iterator[str]:
    """A ``memory://`` broker URL no other test shares."""
    from tidings.transports.memory import MemoryTransport

    url = f"memory://test-{uuid7().hex}"
    yield url
    MemoryTransport.discard_broker(url)


@pytest.fixture
def tidings_context(
    tmp_path: Path, tidings_broker_url: str
) -> Iterator[Callable[..., BoundedContext]]:
    """Make bounded contexts for a test: SQLite files in ``tmp_path``, one test broker."""
    from tidings.context import BoundedContext

    made: list[BoundedContext] = []

    def make(
        name: str,
        *,
        database_url: str | None = None,
        broker_url: str | None = None,
        **options: Any,
    ) -> BoundedContext:
        context = BoundedContext(
            name,
            database_url=database_url or f"sqlite:///{tmp_path / name}.db",
            broker_url=broker_url or tidings_broker_url,
            **options,
        )
        context.create_tables()
        made.append(context)
        return context

    yield make
    for context in made:
        context.dispose()
        with contextlib.suppress(Exception):  # its pool may belong to a closed loop
            asyncio.run(context.adispose())


@pytest.fixture
def tidings_clock() -> Iterator[TestClock]:
    """Predictable event times and ids for the test (see ``deterministic``)."""
    with deterministic() as clock:
        yield clock
