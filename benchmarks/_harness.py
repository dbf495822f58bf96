"""Shared timing helpers: interleaved rounds, best-of, ratios in the same run.

Machines here are shared and noisy, so absolute times mean little; each figure is a
ratio to a baseline measured in the same process, with rounds interleaved so that a
burst of noise hits both sides alike.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable


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


def postgres_database(name: str = "tidings_bench") -> str | None:
    """URL of a scratch PostgreSQL database for benchmarks (created if missing), or None.

    Benchmarks never touch the ``test`` database, which the test suite owns.
    """
    import socket

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


def reset_tables(url: str, *names: str) -> None:
    """Drop ``names`` (business tables) and the tidings tables, for a clean run."""
    from sqlalchemy import create_engine

    from tidings.persistence.tables import metadata

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        for name in names:
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
        metadata.drop_all(connection)
    engine.dispose()
