"""The secret scan: with a password in every URL (PostgreSQL, Redis, RabbitMQ), run the
CLI (db init, relay, consume, outbox status, dlq list, demo), an in-process relay and
consumer and a transport, then look for the password in everything printed, logged
and stored.

The PostgreSQL URLs name a role of the test's own, created with the password; the
shared server trusts local connections, so it would accept any. Redis' default user
has no password, so Redis accepts whatever password the URL carries; RabbitMQ refuses
a wrong one, which is how its error message gets scanned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import MetaData, create_engine, make_url, select, text

from tests.services import require
from tests.support import consumer_app, secret_app
from tests.support.consumer_infra import (
    declare,
    new_tag,
    postgres_database,
    price_changed,
    running,
    wait_until,
)
from tidings import RetryPolicy
from tidings.consumer import Consumer
from tidings.domain.ids import uuid7
from tidings.transports import TransportError, open_transport
from tidings.transports.memory import MemoryTransport
from tidings.worker import ContextWorker

ROOT = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 60.0


@contextlib.contextmanager
def _role_with_password(password: str) -> Iterator[str]:
    """A login role ``tidings_secret_<pid>`` whose password is ``password``."""
    role = f"tidings_secret_{os.getpid()}"
    admin = create_engine(
        make_url(require("postgres")).set(drivername="postgresql+psycopg", database="postgres"),
        isolation_level="AUTOCOMMIT",
    )
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
            connection.execute(text(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'"))
        yield role
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


def _owned_by(url: str, role: str, password: str) -> str:
    """``url``'s database, handed to ``role`` (so it may create tables), as that role."""
    parsed = make_url(url)
    admin = create_engine(parsed.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{parsed.database}" OWNER TO "{role}"'))
    finally:
        admin.dispose()
    return parsed.set(username=role, password=password).render_as_string(hide_password=False)


def _tidings(env: dict[str, str], *arguments: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tidings", "--verbose", *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def _start(env: dict[str, str], *arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tidings", "--verbose", *arguments],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate(timeout=10)
    return output


def _stored(url: str) -> str:
    """Every row of every table in the database at ``url``, as text."""
    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
    try:
        metadata = MetaData()
        metadata.reflect(engine)
        with engine.connect() as connection:
            return "\n".join(
                repr(row)
                for table in metadata.sorted_tables
                for row in connection.execute(select(table))
            )
    finally:
        engine.dispose()


@pytest.mark.postgres
async def test_no_password_appears_in_output_logs_exceptions_or_stored_rows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="tidings")
    secret = f"pw{uuid7().hex}"
    tag = new_tag()
    require("redis")
    stream = f"tidings:secret:{tag}"
    broker = f"redis://default:{secret}@127.0.0.1:6379/0?stream={stream}&block_ms=200"
    seen: list[str] = []
    with (
        _role_with_password(secret) as role,
        postgres_database(f"{tag}c") as catalog_plain,
        postgres_database(f"{tag}b") as basket_plain,
    ):
        catalog_url = _owned_by(catalog_plain, role, secret)
        basket_url = _owned_by(basket_plain, role, secret)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            secret_app.CATALOG_DATABASE_ENV: catalog_url,
            secret_app.BASKET_DATABASE_ENV: basket_url,
            secret_app.BROKER_ENV: broker,
        }
        catalog_app, basket_app = (f"tests.support.secret_app:{n}" for n in ("catalog", "basket"))
        seen.append(_tidings(env, "db", "init", catalog_app))
        seen.append(_tidings(env, "db", "init", basket_app))

        catalog = consumer_app.build_catalog(catalog_url, broker)
        basket = consumer_app.build_basket(basket_url, broker)
        seen += [repr(catalog), repr(basket), repr(open_transport(broker))]
        async with open_transport(broker) as transport:
            await transport.declare_subscription(basket.name, {consumer_app.PRICE_CHANGED})
        with catalog.transaction():
            consumer_app.ChangeProductPrice(catalog).execute("fine", Decimal(5))
        # A message the consumer cannot decode: a dead-letter record to scan.
        with Redis.from_url(broker.split("?")[0]) as redis:
            redis.xadd(
                stream,
                {"type": consumer_app.PRICE_CHANGED, "source": "catalog", "key": "bad",
                 "id": str(uuid7()), "body": b"{not json"},
            )  # fmt: skip

        relay = _start(env, "relay", catalog_app)
        consumer = _start(env, "consume", basket_app)
        try:
            deadline = time.monotonic() + WAIT_SECONDS
            while time.monotonic() < deadline:
                stored = _stored(basket_url)
                if "fine" in stored and "undecodable" in stored:
                    break
                time.sleep(0.2)
            else:
                pytest.fail(f"the basket did not handle both messages in {WAIT_SECONDS:g}s")
        finally:
            seen += [_stop(relay), _stop(consumer)]

        for arguments in (
            ("outbox", "status", catalog_app),
            ("outbox", "status", catalog_app, "--json"),
            ("dlq", "list", basket_app),
            ("dlq", "list", basket_app, "--json"),
        ):
            seen.append(_tidings(env, *arguments))

        # The same relay and consumer in this process, logging at DEBUG into caplog.
        with catalog.transaction():
            consumer_app.ChangeProductPrice(catalog).execute("embedded", Decimal(9))
        workers = [ContextWorker(catalog), ContextWorker(basket)]
        running = [asyncio.create_task(worker.run()) for worker in workers]
        try:
            deadline = time.monotonic() + WAIT_SECONDS
            while "embedded" not in _stored(basket_url):
                assert time.monotonic() < deadline, "the in-process consumer handled nothing"
                await asyncio.sleep(0.2)
        finally:
            for worker in workers:
                await worker.stop()
            _, stuck = await asyncio.wait(running, timeout=WAIT_SECONDS)
            for task in stuck:
                task.cancel()
            ended = await asyncio.gather(*running, return_exceptions=True)
        seen += [_stored(catalog_url), _stored(basket_url)]
        catalog.dispose()
        await basket.adispose()
        await catalog.adispose()

    # A broker that refuses the password: the error names the broker, not the secret.
    with pytest.raises(TransportError) as refused:
        async with open_transport(f"amqp://guest:{secret}@127.0.0.1:5672/?connect_timeout=3"):
            pass
    seen += [str(refused.value), repr(refused.value)]
    seen += [record.getMessage() for record in caplog.records]

    everything = "\n".join(seen)
    assert "relaying" in everything and "consuming" in everything  # the scan saw the CLI
    assert "***" in everything  # and the URLs, redacted
    assert secret not in everything
    assert not stuck, "an in-process ContextWorker did not stop within the wait"
    assert ended == [None, None]  # and both stopped cleanly


def test_the_demo_shows_no_password(tmp_path: Path) -> None:
    secret = f"pw{uuid7().hex}"
    require("redis")
    stream = f"tidings:secret-demo:{uuid7().hex}"
    broker = f"redis://default:{secret}@127.0.0.1:6379/0?stream={stream}"
    folder = tmp_path / "demo"
    try:
        shown = _tidings(
            {**os.environ, "COLUMNS": "120"},
            "demo", "--users", "4", "--products", "5", "--orders", "6", "--price-changes", "3",
            "--folder", str(folder), "--broker", broker,
        )  # fmt: skip
    finally:
        with Redis.from_url(broker.split("?")[0]) as redis:
            redis.delete(stream)
    assert "every context converged" in shown
    assert "***" in shown
    assert secret not in shown
    for path in folder.iterdir():  # the contexts' logs and SQLite databases
        assert secret.encode() not in path.read_bytes(), path.name


async def test_a_handler_error_quoting_a_url_is_logged_and_dead_lettered_redacted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tidings")
    secret = f"pw{uuid7().hex}"

    def fail(_event: object) -> None:
        raise ConnectionError(f"cannot reach postgresql://app:{secret}@db.internal/shop")

    broker = f"memory://secret-{new_tag()}"
    basket = consumer_app.build_basket(f"sqlite:///{tmp_path / 'basket.db'}", broker, before=fail)
    consumer = Consumer(
        basket, immediate_retries=0, retry=RetryPolicy(initial_delay=0.01), max_attempts=2
    )
    try:
        await declare(consumer)
        async with running(consumer):
            async with open_transport(broker) as producer:
                await producer.publish_batch("catalog", [price_changed("p", 1)])
            await wait_until(lambda: consumer.stats.dead_lettered == 1, what="a dead letter")
        [letter] = await consumer.dead_letters.list()
    finally:
        await basket.adispose()
        MemoryTransport.discard_broker(broker)
    assert letter.error_message == "cannot reach postgresql://app:***@db.internal/shop"
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "app:***@db.internal" in logged
    assert secret not in logged
