"""Shared timing helpers: interleaved rounds, best-of, ratios in the same run.

Machines here are shared and noisy, so absolute times mean little; each figure is a
ratio to a baseline measured in the same process, with rounds interleaved so that a
burst of noise hits both sides alike.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any


def per_call_seconds(run: Callable[[int], None], iterations: int) -> float:
    """Wall time per iteration of ``run(iterations)``."""
    start = time.perf_counter()
    run(iterations)
    return (time.perf_counter() - start) / iterations


def compare(
    candidates: dict[str, Callable[[int], None]], *, iterations: int, rounds: int
) -> dict[str, float]:
    """Best per-iteration time of each candidate over interleaved rounds."""
    best = {name: float("inf") for name in candidates}
    for _ in range(rounds):
        for name, run in candidates.items():
            best[name] = min(best[name], per_call_seconds(run, iterations))
    return best


def median_of(samples: list[float]) -> float:
    return statistics.median(samples)


def emit(figures: dict[str, object]) -> None:
    """Print the figures as one JSON object, the script's last line."""
    print(json.dumps(figures, sort_keys=True))


#: Appended to scratch database and broker names (``TIDINGS_BENCH_SUFFIX=_mine``), so
#: that two people benchmarking on one machine do not reset each other's tables.
SUFFIX = os.environ.get("TIDINGS_BENCH_SUFFIX", "")


def postgres_database(name: str = "tidings_bench") -> str | None:
    """URL of a scratch PostgreSQL database for benchmarks (created if missing), or None.

    Benchmarks never touch the ``test`` database, which the test suite owns.
    """
    import socket

    name += SUFFIX

    from sqlalchemy import create_engine, text

    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
    except OSError:
        return None
    admin = create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        exists = connection.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        ).first()
        if not exists:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def mariadb_database(name: str = "tidings_bench") -> str | None:
    """URL of a scratch MariaDB database for benchmarks (created if missing), or None."""
    from sqlalchemy import create_engine

    if not reachable(3306):
        return None
    admin = create_engine("mysql+pymysql://root@127.0.0.1:3306/", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE IF NOT EXISTS `{name}`")
    admin.dispose()
    return f"mysql://root@127.0.0.1:3306/{name}"


def reset_tables(url: str, *names: str) -> None:
    """Drop ``names`` (business tables) and the tidings tables, for a clean run."""
    from sqlalchemy import create_engine

    from tidings.persistence.tables import metadata

    engine = create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1).replace(
            "mysql://", "mysql+pymysql://", 1
        )
    )
    with engine.begin() as connection:
        for name in names:
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
        metadata.drop_all(connection)
    engine.dispose()


def report_round(label: str, rates: dict[str, float], best: dict[str, float]) -> None:
    """Keep each side's best rate and print the round: raw, tidings and their ratio."""
    for side, rate in rates.items():
        best[side] = max(best[side], rate)
    print(
        f"  {label}: raw {rates['raw']:,.0f}/s, tidings {rates['tidings']:,.0f}/s "
        f"({rates['tidings'] / rates['raw']:.2f})",
        flush=True,
    )


def start_process(
    command: Sequence[str], cwd: Path, env: Mapping[str, str]
) -> subprocess.Popen[str]:
    """Start ``command`` and return once it printed its first line ("ready",
    "consuming ...", "relaying ...": started)."""
    process = subprocess.Popen(
        list(command), cwd=cwd, env=dict(env), stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    process.stdout.readline()
    return process


def stop_processes(*processes: subprocess.Popen[str]) -> None:
    """SIGTERM every process, then wait for each (SIGKILL after 15 s)."""
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def reachable(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def reachable_brokers(
    parser: argparse.ArgumentParser, names: str, brokers: Mapping[str, tuple[str, int]]
) -> list[tuple[str, str]]:
    """(name, URL) of each broker in the comma-separated ``names`` that answers.

    An unknown name is a usage error; an unreachable broker is skipped, saying so.
    """
    chosen: list[tuple[str, str]] = []
    for name in [name for name in names.split(",") if name and name != "none"]:
        if name not in brokers:
            parser.error(f"unknown broker {name!r}; choose from {', '.join(brokers)}")
        url, port = brokers[name]
        if reachable(port):
            chosen.append((name, url))
        else:
            print(f"{name}: unreachable at 127.0.0.1:{port}, skipped")
    return chosen


async def remove_broker_state(url: str, groups: Collection[str]) -> None:
    """Leave the broker as found: delete the ``groups``' subscriptions, then the stream,
    key, topic or exchange that the transport ``url`` names."""
    from tidings.transports import open_transport

    async with open_transport(url) as transport:
        for group in groups:
            await transport.delete_subscription(group)
        options: Any = getattr(transport, "options", None)
    server = url.split("?")[0]
    scheme = server.split(":", 1)[0]
    if scheme == "nats":
        import nats

        client = await nats.connect(server)
        with contextlib.suppress(Exception):
            await client.jetstream().delete_stream(options.stream)
        await client.close()
    elif scheme == "redis":
        from redis.asyncio import Redis

        redis = Redis.from_url(server)
        await redis.delete(options.stream)
        await redis.aclose()
    elif scheme == "amqp":
        import aio_pika

        connection = await aio_pika.connect(server)
        await (await connection.channel()).exchange_delete(options.exchange)
        await connection.close()
    elif scheme == "pubsub":
        from tidings.transports.pubsub import PubSubTransport

        pubsub = PubSubTransport(url)
        publisher = pubsub._publisher_client()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(publisher.delete_topic, topic=pubsub.topic_path)
        await pubsub.close()
    elif scheme == "kafka":
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=options.bootstrap_servers)
        await admin.start()
        try:
            await admin.delete_topics([options.topic])
        finally:
            await admin.close()
