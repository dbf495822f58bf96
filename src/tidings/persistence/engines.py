"""Engines from one database URL: a sync and an asyncio flavour, tuned per dialect.

PostgreSQL over TLS takes libpq's options in the URL, for both drivers:
``?sslmode=verify-full&sslrootcert=ca.pem&sslcert=client.pem&sslkey=client.key``, or
tidings' shorter ``?ca=ca.pem&cert=client.pem&key=client.key`` (the same names as the
broker URLs), which implies ``sslmode=verify-full``. psycopg hands them to libpq;
for asyncpg, which takes an :class:`ssl.SSLContext` instead, they become one built by
:mod:`tidings.tls` with libpq's meaning of the mode (``verify-full``: CA and host name
checked; ``verify-ca``: CA only; ``require``: encrypted, the CA checked only when
``sslrootcert`` is given; the client certificate sent in all three); ``disable``,
``allow`` and ``prefer`` are passed to asyncpg as they are, without a client
certificate. Unlike libpq, a ``verify-*`` mode without ``sslrootcert`` trusts the
system's CAs, not ``~/.postgresql/root.crt``.
A certificate that does not verify raises :class:`~tidings.errors.TlsError`.
"""

from __future__ import annotations

import ssl
from collections.abc import MutableMapping
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from tidings.errors import ConfigurationError, MissingExtraError
from tidings.tls import TLS_OPTIONS, TlsSettings, tls_failure

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
# tidings' TLS option -> libpq's
_LIBPQ_TLS = {"ca": "sslrootcert", "cert": "sslcert", "key": "sslkey"}
_LIBPQ_TLS_OPTIONS = ("sslmode", *_LIBPQ_TLS.values())


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
    return _libpq_tls_names(parsed)


def _libpq_tls_names(url: URL) -> URL:
    """``?ca=&cert=&key=`` as libpq's ``sslrootcert``/``sslcert``/``sslkey`` with
    ``sslmode=verify-full``; PostgreSQL URLs only."""
    given = {name: url.query[name] for name in TLS_OPTIONS if name in url.query}
    if not given:
        return url
    if url.get_backend_name() != "postgresql":
        raise ConfigurationError(
            f"?{'=, ?'.join(given)}= are TLS options of PostgreSQL URLs; for "
            f"{url.get_backend_name()} use its driver's own TLS options"
        )
    query: dict[str, Any] = {k: v for k, v in url.query.items() if k not in TLS_OPTIONS}
    query.update({_LIBPQ_TLS[name]: value for name, value in given.items()})
    query.setdefault("sslmode", "verify-full")
    return url.set(query=query)


def asyncpg_tls(params: MutableMapping[str, Any]) -> None:
    """Replace libpq's TLS options in asyncpg connect arguments ``params`` by the
    ``ssl`` argument asyncpg takes (see the module docs)."""
    found = {name: params.pop(name) for name in _LIBPQ_TLS_OPTIONS if name in params}
    mode = found.get("sslmode")
    if mode is None:
        if len(found) > 0:
            raise ConfigurationError("sslrootcert=/sslcert=/sslkey= need an sslmode=")
        return
    if mode in ("disable", "allow", "prefer"):
        params["ssl"] = mode  # asyncpg's own handling; no client certificate is sent
        return
    if mode not in ("require", "verify-ca", "verify-full"):
        raise ConfigurationError(
            f"unknown sslmode={mode!r}; use disable, allow, prefer, require, verify-ca "
            "or verify-full"
        )
    settings = TlsSettings(
        ca=found.get("sslrootcert"), cert=found.get("sslcert"), key=found.get("sslkey")
    )
    context = settings.context()
    if mode != "verify-full":
        context.check_hostname = False
    if mode == "require" and settings.ca is None:
        # As libpq: ``require`` checks the CA only when a root certificate is named.
        context.verify_mode = ssl.CERT_NONE
    params["ssl"] = context


def _tls_errors(engine: Engine, url: URL) -> None:
    """A failed TLS handshake surfaces as :class:`TlsError`, naming what to fix."""
    where = f"{url.host or 'localhost'}:{url.port or 5432}"

    @event.listens_for(engine, "handle_error")
    def _on_error(context: Any) -> None:
        refused = tls_failure(context.original_exception, where)
        if refused is not None:
            raise refused from context.original_exception


def _asyncpg_tuning(engine: Engine, url: URL) -> None:
    where = f"{url.host or 'localhost'}:{url.port or 5432}"

    @event.listens_for(engine, "do_connect")
    def _on_connect(dialect: Any, _record: Any, args: Any, params: dict[str, Any]) -> Any:
        asyncpg_tls(params)
        try:
            return dialect.connect(*args, **params)
        except Exception as exc:
            # asyncpg's ssl errors are not DBAPI errors: "handle_error" never sees them.
            refused = tls_failure(exc, where)
            if refused is not None:
                raise refused from exc
            raise


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
    if url.get_backend_name() in ("mysql", "mariadb"):
        # READ COMMITTED, as PostgreSQL runs by default (and Django on MySQL): under
        # InnoDB's REPEATABLE READ the relay's mark (INSERT ... SELECT then DELETE by
        # position) locks every outbox row it scans, not only its own, so relays
        # marking interleaved partitions deadlock, and each deadlock sends a confirmed
        # batch again. tidings relies on nothing REPEATABLE READ adds.
        return {"pool_pre_ping": True, "isolation_level": "READ COMMITTED"}
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
    if parsed.get_backend_name() == "postgresql":
        _tls_errors(engine, parsed)
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
    if parsed.get_backend_name() == "postgresql":
        _tls_errors(engine.sync_engine, parsed)
        if parsed.get_driver_name() == "asyncpg":
            _asyncpg_tuning(engine.sync_engine, parsed)
    return engine
