"""Engines from one database URL: a sync and an asyncio flavour, tuned per dialect."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from tidings.errors import ConfigurationError, MissingExtraError

# backend -> (sync driver, async driver, extra that installs them)
_DRIVERS: dict[str, tuple[str, str, str]] = {
    "sqlite": ("pysqlite", "aiosqlite", "sqlite"),
    "postgresql": ("psycopg", "asyncpg", "postgres"),
    "mysql": ("pymysql", "aiomysql", "mariadb"),
    "mariadb": ("pymysql", "aiomysql", "mariadb"),
}
# Execution option marking a connection that only reads (see ``_sqlite_tuning``).
READ_ONLY_OPTION = "tidings_read_only"
_ASYNC_ONLY = {"asyncpg", "aiosqlite", "aiomysql", "asyncmy", "psycopg_async"}
_SYNC_ONLY = {"pysqlite", "psycopg2", "pymysql", "mysqldb", "pg8000"}


def parse_database_url(url: str | URL) -> URL:
    """Parse ``url``, accepting ``postgres://`` as Heroku-style shorthand."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"invalid database URL {str(url)!r}: {exc}") from exc
    if parsed.get_backend_name() == "postgres":
        parsed = parsed.set(drivername="postgresql")
    if parsed.get_backend_name() not in _DRIVERS:
        raise ConfigurationError(
            f"unsupported database {parsed.get_backend_name()!r}; use sqlite:///file.db, "
            "postgresql://… or mysql://…"
        )
    return parsed


def _with_driver(url: URL, *, asynchronous: bool) -> URL:
    backend = url.get_backend_name()
    sync_driver, async_driver, _ = _DRIVERS[backend]
    driver = url.get_driver_name() if "+" in url.drivername else ""
    if asynchronous and (not driver or driver in _SYNC_ONLY):
        driver = async_driver
    elif not asynchronous and (not driver or driver in _ASYNC_ONLY):
        driver = sync_driver
    return url.set(drivername=f"{backend}+{driver}")


def _is_memory_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def _sqlite_tuning(sync_engine: Engine, *, memory: bool) -> None:
    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event, not the driver, open transactions.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads
        # then writes fails at once with "database is locked" under concurrency
        # instead of waiting, because SQLite cannot upgrade it safely. Connections
        # marked read-only stay deferred: in WAL mode they never wait for a writer, so
        # counting the outbox inside an open transaction cannot deadlock on its lock.
        if connection.get_execution_options().get(READ_ONLY_OPTION):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def _engine_options(url: URL) -> dict[str, Any]:
    if _is_memory_sqlite(url):
        return {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    if url.get_backend_name() == "sqlite":
        return {"connect_args": {"check_same_thread": False}}
    return {"pool_pre_ping": True}


def _missing_driver(url: URL, exc: Exception) -> MissingExtraError:
    extra = _DRIVERS[url.get_backend_name()][2]
    return MissingExtraError(f"the database URL {url.render_as_string(hide_password=True)}", extra)


def create_sync_engine(url: str | URL, **options: Any) -> Engine:
    """A synchronous engine for ``url`` (driver chosen when the URL names none)."""
    parsed = _with_driver(parse_database_url(url), asynchronous=False)
    try:
        engine = create_engine(parsed, **{**_engine_options(parsed), **options})
    except (ModuleNotFoundError, NoSuchModuleError) as exc:
        raise _missing_driver(parsed, exc) from exc
    if parsed.get_backend_name() == "sqlite":
        _sqlite_tuning(engine, memory=_is_memory_sqlite(parsed))
    return engine


def create_asyncio_engine(url: str | URL, **options: Any) -> AsyncEngine:
    """An asyncio engine for ``url`` (asyncpg, aiosqlite or aiomysql by default)."""
    parsed = _with_driver(parse_database_url(url), asynchronous=True)
    try:
        engine = create_async_engine(parsed, **{**_engine_options(parsed), **options})
    except (ModuleNotFoundError, NoSuchModuleError) as exc:
        raise _missing_driver(parsed, exc) from exc
    if parsed.get_backend_name() == "sqlite":
        _sqlite_tuning(engine.sync_engine, memory=_is_memory_sqlite(parsed))
    return engine
