"""Dashboard pages' server time with 100,000 dead letters and 1,000,000 outbox rows.

Fills a scratch PostgreSQL database with ``INSERT ... SELECT generate_series`` (950,000
archived outbox rows and 50,000 pending, 100,000 dead letters over five reasons and
two days, 100,000 inbox rows), then times each page through the ASGI app in-process
(httpx's ASGI transport: no socket, so the figure is the server's own time). Each page
is requested ``--runs`` times after one warm-up; median and worst, in milliseconds.
Last line: one JSON object.

    python benchmarks/dashboard.py [--runs 15] [--target-ms 150]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

import httpx
from sqlalchemy import create_engine, text

from _harness import emit, postgres_database, reset_tables
from tidings import BoundedContext
from tidings.dashboard import create_app

OUTBOX_ROWS = 1_000_000
PENDING_ROWS = 50_000
DEAD_LETTERS = 100_000
INBOX_ROWS = 100_000
GROUP = "bench"

FILL = [
    f"""
    INSERT INTO tidings_outbox (event_id, event_type, event_version, source, partition_key,
        payload, occurred_at, created_at, correlation_id, attempts, published_at)
    SELECT 'ev-' || g, 'bench.thing_updated', 1, 'bench', 'thing-' || (g % 1000),
        '{{"thing_id": "thing-' || (g % 1000) || '", "seq": ' || g || '}}',
        now() - make_interval(secs => {OUTBOX_ROWS} - g),
        now() - make_interval(secs => {OUTBOX_ROWS} - g),
        'corr-' || (g / 10), 0,
        CASE WHEN g <= {OUTBOX_ROWS - PENDING_ROWS}
             THEN now() - make_interval(secs => {OUTBOX_ROWS} - g) END
    FROM generate_series(1, {OUTBOX_ROWS}) AS g
    """,
    f"""
    INSERT INTO tidings_dead_letters (letter_id, consumer, reason, event_id, event_type,
        event_version, partition_key, body, headers, error_type, error_message, attempts,
        first_failed_at, last_failed_at)
    SELECT 'letter-' || g, '{GROUP}',
        (ARRAY['handler_failed', 'invalid_payload', 'unknown_type', 'undecodable',
               'too_large'])[1 + g % 5],
        'dead-' || g, 'bench.type_' || (g % 20), 1, 'thing-' || (g % 1000),
        convert_to('{{"thing_id": "thing-' || g || '", "seq": ' || g || '}}', 'UTF8'),
        '{{"ce-id": "dead-' || g || '", "ce-correlationid": "dcorr-' || (g / 10) || '"}}',
        'RuntimeError', 'handler refused thing-' || g, 3,
        now() - make_interval(secs => g * 1.7), now() - make_interval(secs => g * 1.7)
    FROM generate_series(1, {DEAD_LETTERS}) AS g
    """,
    f"""
    INSERT INTO tidings_inbox (consumer, event_id, processed_at)
    SELECT '{GROUP}', 'ev-' || g, now() FROM generate_series(1, {INBOX_ROWS}) AS g
    """,
    """
    INSERT INTO tidings_relay_members (name, owner, expires_at, published_total, rate_per_s,
        updated_at)
    VALUES ('bench', 'bench-host:1:relay', now() - interval '1 minute', 950000, 812.5, now())
    """,
    """
    INSERT INTO tidings_relay_partitions (name, partition_no, owner, expires_at)
    SELECT 'bench', g, 'bench-host:1:relay', now() - interval '1 minute'
    FROM generate_series(0, 15) AS g
    """,
]


def fill(url: str) -> float:
    """Create the tables and fill them; seconds taken."""
    started = time.perf_counter()
    reset_tables(url)
    context = BoundedContext("bench", database_url=url, consumer_group=GROUP)
    context.create_tables()
    context.dispose()
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        for statement in FILL:
            connection.execute(text(statement))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()
    return time.perf_counter() - started


PAGES = {
    "overview": "/",
    "overview_poll": "/overview/table",
    "dead_letters": "/dead-letters",
    "dead_letters_filtered": "/dead-letters?reason=undecodable&type=bench.type_8",
    "dead_letters_since": "/dead-letters?since=2026-01-01T00:00",
    "dead_letters_page_1000": "/dead-letters?page=1000",
    "dead_letter": "/dead-letters/bench/letter-4242",
    "lookup_event_id": "/lookup?id=ev-999990",
    "lookup_correlation_id": "/lookup?id=corr-99999",
    "lookup_dead_letter_correlation": "/lookup?id=dcorr-4242",
    "map": "/map",
}


async def time_pages(url: str, runs: int) -> dict[str, dict[str, float]]:
    context = BoundedContext("bench", database_url=url, consumer_group=GROUP)
    app = create_app([context])
    figures: dict[str, dict[str, float]] = {}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://bench"
    ) as http:
        for name, path in PAGES.items():
            (await http.get(path)).raise_for_status()  # warm-up: pools, plans, templates
            samples = []
            for _ in range(runs):
                started = time.perf_counter()
                response = await http.get(path)
                samples.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
            figures[name] = {
                "median_ms": round(statistics.median(samples), 1),
                "max_ms": round(max(samples), 1),
            }
            print(
                f"  {name:32} median {figures[name]['median_ms']:7.1f} ms, "
                f"worst {figures[name]['max_ms']:7.1f} ms",
                flush=True,
            )
    await context.adispose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--target-ms", type=float, default=150.0)
    options = parser.parse_args()
    url = postgres_database("tidings_bench_dashboard")
    if url is None:
        sys.exit("PostgreSQL is not reachable on 127.0.0.1:5432")
    print(f"filling {OUTBOX_ROWS:,} outbox rows, {DEAD_LETTERS:,} dead letters...", flush=True)
    fill_s = fill(url)
    print(f"  filled in {fill_s:.1f} s", flush=True)
    pages = asyncio.run(time_pages(url, options.runs))
    worst_median = max(page["median_ms"] for page in pages.values())
    emit(
        {
            "benchmark": "dashboard",
            "outbox_rows": OUTBOX_ROWS,
            "pending_rows": PENDING_ROWS,
            "dead_letters": DEAD_LETTERS,
            "fill_seconds": round(fill_s, 1),
            "pages": pages,
            "slowest_median_ms": worst_median,
            "target_ms": options.target_ms,
            "within_target": worst_median <= options.target_ms,
        }
    )


if __name__ == "__main__":
    main()
