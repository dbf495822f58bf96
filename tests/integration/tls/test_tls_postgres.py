"""PostgreSQL over TLS (``sslmode=verify-full``) with both drivers tidings uses:
psycopg for the sync engine, asyncpg for the asyncio engine and the relay's LISTEN,
against a private PostgreSQL that accepts only TLS with a client certificate."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import text

from tests.support.tcp_proxy import TcpProxy
from tests.support.tls_endpoints import Certificates
from tidings import BoundedContext
from tidings.errors import TlsError
from tidings.outbox.wakeup import Wakeup
from tidings.persistence import create_asyncio_engine, create_sync_engine

FAIL_FAST_SECONDS = 10.0
SSL_IN_USE = text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")


def libpq_url(where: str, certs: Certificates, *, ca: str | None = None) -> str:
    return (
        f"postgresql://postgres@{where}/postgres?sslmode=verify-full"
        f"&sslrootcert={ca or certs.ca}&sslcert={certs.client_cert}&sslkey={certs.client_key}"
    )


def short_url(where: str, certs: Certificates) -> str:
    return f"postgresql://postgres@{where}/postgres?{certs.query()}"


@pytest.mark.parametrize("spelling", [libpq_url, short_url], ids=["libpq", "ca-cert-key"])
async def test_both_drivers_and_the_relay_listener_connect_over_tls(
    postgres_tls_port: int, certs: Certificates, spelling: object
) -> None:
    assert callable(spelling)
    url: str = spelling(f"127.0.0.1:{postgres_tls_port}", certs)
    sync_engine = create_sync_engine(url)
    async_engine = create_asyncio_engine(url)
    try:
        with sync_engine.connect() as connection:
            assert connection.execute(SSL_IN_USE).scalar() is True
        async with async_engine.connect() as connection:
            assert (await connection.execute(SSL_IN_USE)).scalar() is True
        wakeup = Wakeup(async_engine.url)
        await wakeup.start()
        try:
            assert wakeup.listening
        finally:
            await wakeup.stop()
    finally:
        sync_engine.dispose()
        await async_engine.dispose()


async def test_a_context_commits_and_reads_its_outbox_over_tls(
    postgres_tls_port: int, certs: Certificates
) -> None:
    context = BoundedContext(
        "catalog", database_url=short_url(f"127.0.0.1:{postgres_tls_port}", certs)
    )
    try:
        await asyncio.to_thread(context.create_tables)
        async with context.async_engine.connect() as connection:
            count = await connection.execute(text("SELECT count(*) FROM tidings_outbox"))
            assert count.scalar() == 0
    finally:
        await context.adispose()


@pytest.mark.parametrize("driver", ["psycopg", "asyncpg"])
async def test_a_server_certificate_from_another_ca_is_refused_fast(
    postgres_tls_port: int, certs: Certificates, driver: str
) -> None:
    url = libpq_url(f"127.0.0.1:{postgres_tls_port}", certs, ca=str(certs.wrong_ca))
    started = time.monotonic()
    with pytest.raises(TlsError, match=r"TLS certificate verification failed .*\?ca="):
        await _connect(url, driver)
    assert time.monotonic() - started < FAIL_FAST_SECONDS


@pytest.mark.parametrize("driver", ["psycopg", "asyncpg"])
async def test_a_host_name_the_certificate_does_not_carry_is_refused_fast(
    postgres_tls_port: int, certs: Certificates, driver: str
) -> None:
    async with TcpProxy("127.0.0.1", postgres_tls_port, listen_host="127.0.0.2") as proxy:
        url = short_url(f"127.0.0.2:{proxy.port}", certs)
        started = time.monotonic()
        with pytest.raises(TlsError, match=r"TLS host name check failed for 127\.0\.0\.2"):
            await _connect(url, driver)
    assert time.monotonic() - started < FAIL_FAST_SECONDS


@pytest.mark.parametrize("driver", ["psycopg", "asyncpg"])
async def test_verify_ca_and_require_skip_the_host_name_check_on_both_drivers(
    postgres_tls_port: int, certs: Certificates, driver: str
) -> None:
    client = f"sslcert={certs.client_cert}&sslkey={certs.client_key}"
    async with TcpProxy("127.0.0.1", postgres_tls_port, listen_host="127.0.0.2") as proxy:
        where = f"postgres@127.0.0.2:{proxy.port}/postgres"
        await _connect(
            f"postgresql://{where}?sslmode=verify-ca&sslrootcert={certs.ca}&{client}", driver
        )
        await _connect(f"postgresql://{where}?sslmode=require&{client}", driver)
        # libpq's rule, on both drivers: require with a root certificate checks the CA.
        with pytest.raises(TlsError, match="certificate verification failed"):
            await _connect(
                f"postgresql://{where}?sslmode=require&sslrootcert={certs.wrong_ca}&{client}",
                driver,
            )


async def _connect(url: str, driver: str) -> None:
    if driver == "psycopg":
        engine = create_sync_engine(url)
        try:
            # In a thread: the proxy of the host name test runs on this event loop.
            await asyncio.to_thread(lambda: engine.connect().close())
        finally:
            engine.dispose()
        return
    async_engine = create_asyncio_engine(url)
    try:
        async with async_engine.connect():
            pass
    finally:
        await async_engine.dispose()
