"""Shared fixtures: database URLs on SQLite, PostgreSQL and MariaDB, each test on a clean
database.

PostgreSQL tests get a private database for the whole run (other suites use the
``test`` database at the same time) whose ``public`` schema is dropped and recreated
before every test, so each test starts from nothing.
"""

from __future__ import annotations

import itertools
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
    pytest.param("mariadb", id="mariadb", marks=pytest.mark.mariadb),
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


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """The URL of a MariaDB database of the test's own, dropped afterwards.

    One database per test (``tidings_<pid>_<n>``): MariaDB has no schemas to reset
    inside a database, and creating one is quick.
    """
    base = make_url(require("mariadb")).set(drivername="mysql+pymysql")
    name = f"tidings_{os.getpid()}_{next(_MARIADB_NUMBERS)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        connection.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    try:
        yield make_url(require("mariadb")).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


_MARIADB_NUMBERS = itertools.count(1)


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using it runs three times: on a SQLite file, a clean PostgreSQL and a
    MariaDB database of its own."""
    fixture = f"{request.param}_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture(params=[db for db in DATABASES if db.values[0] != "sqlite"])
def server_database_url(request: pytest.FixtureRequest) -> str:
    """Like ``database_url``, on the database servers only (PostgreSQL, MariaDB): for
    tests of many connections at once, which one SQLite file serialises."""
    url: str = request.getfixturevalue(f"{request.param}_url")
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
