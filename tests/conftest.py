"""Shared fixtures: database URLs on SQLite and PostgreSQL, each test on a clean database.

PostgreSQL tests get a private database for the whole run (other suites use the
``test`` database at the same time) whose ``public`` schema is dropped and recreated
before every test, so each test starts from nothing.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, make_url, text

from tests.services import require
from tidings import BoundedContext

DATABASES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file of the test's own."""
    return f"sqlite:///{tmp_path / 'context.db'}"


@pytest.fixture(scope="session")
def _postgres_database() -> Iterator[str]:
    base = make_url(require("postgres"))
    name = f"tidings_core_{os.getpid()}"
    admin = create_engine(
        base.set(drivername="postgresql+psycopg"),
        isolation_level="AUTOCOMMIT",
        pool_pre_ping=True,  # survives the PostgreSQL restart of the relay outage test
    )
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url(_postgres_database: str) -> str:
    """The URL of a PostgreSQL database whose public schema is empty."""
    url = make_url(_postgres_database).set(drivername="postgresql+psycopg")
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()
    return _postgres_database


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using it runs twice: on a SQLite file, then on a clean PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url


ContextFactory = Callable[..., BoundedContext]


@pytest.fixture
def make_context() -> Iterator[ContextFactory]:
    """Build bounded contexts whose tidings tables exist; their pools close after the test."""
    made: list[BoundedContext] = []

    def make(url: str, name: str = "catalog", **options: Any) -> BoundedContext:
        context = BoundedContext(name, database_url=url, **options)
        context.create_tables()
        made.append(context)
        return context

    yield make
    for context in made:
        context.dispose()


@pytest.fixture
async def make_async_context() -> AsyncIterator[ContextFactory]:
    """Like ``make_context``, for asyncio tests: both pools close inside the test's loop."""
    made: list[BoundedContext] = []

    def make(url: str, name: str = "catalog", **options: Any) -> BoundedContext:
        context = BoundedContext(name, database_url=url, **options)
        made.append(context)
        return context

    yield make
    for context in made:
        await context.adispose()
