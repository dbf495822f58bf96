"""The embedded default path end to end, as the demo runs it: SQLite outbox -> ``tidings
relay`` -> SQLite-file broker -> ``tidings consume`` -> SQLite inbox, in separate processes.

tidings' side is ``user_path_app.py`` on three SQLite files (the producing context's
database, the consuming context's database and a ``sqlite:///`` broker file; the
handler writes one effect row per event in the plain ``handle`` style of the tutorial),
started through the CLI. The hand-written side (``_embedded_raw.py``) is two processes
of plain ``sqlite3`` doing the same observable work over SQLite files of its own, with
the same journal mode and ``synchronous`` settings: relay rows to a log table, delete
them; consume the log from an offset, inbox and effect rows and the offset in one
transaction per batch.

Throughput: a backlog of ``--events`` rows; the consumer process starts first, then
the relay; rate = events / (last effect - first effect), from the effect rows' own
``time.monotonic()`` stamps, so process start-up is left out on both sides. Every round
starts on fresh files; rounds alternate the order of the sides. ``events_per_s`` is
tidings' best round, ``ratio`` that over the hand-written pipeline's best round.

Latency: relay and consumer running, a producer process commits 250 events/s through
tidings (one event per transaction); latency = effect stamp - the moment the producer's
commit returned, the first second left out. ``p50_ms``/``p99_ms`` are tidings',
``raw_p50_ms``/``raw_p99_ms`` the hand-written pipeline's. ``relay_cpu_us`` and
``consumer_cpu_us`` (``raw_`` for the hand-written side): CPU time of each process over
the paced run, per event, from ``/proc`` (Linux): what waking up costs at a low rate.

    python benchmarks/embedded_end_to_end.py           # 50,000 events x 3 rounds; 15 s paced
    python benchmarks/embedded_end_to_end.py --quick   # 10,000 events x 1 round; 5 s paced
    python benchmarks/embedded_end_to_end.py --smoke   # 1,000 events x 1 round; 2 s: it works
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _embedded_raw import create_files
from _harness import emit, start_process, stop_processes
from _relay_common import insert_backlog, make_context
from relay_latency import RATE, paced_commits, percentiles
from tidings import BoundedContext

HERE = Path(__file__).resolve().parent
GROUP = "bench-user"  # the consuming context's name: tidings' group, and the raw one's
TARGETS = {"events_per_s": (">=", 5_000), "ratio": (">=", 0.9), "p99_ms": ("<=", 20)}


class Side:
    """One pipeline on its own three files: how to reset them and start its processes."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.root = root / name
        self.outbox, self.broker, self.inbox = (
            self.root / f"{file}.db" for file in ("outbox", "broker", "inbox")
        )

    @property
    def outbox_url(self) -> str:
        return f"sqlite:///{self.outbox}"

    def reset(self) -> None:
        """Fresh files: the outbox and inbox tables (and the raw side's log and offsets)."""
        if self.root.exists():
            for leftover in self.root.iterdir():
                leftover.unlink()
        self.root.mkdir(parents=True, exist_ok=True)
        from user_path_app import effect_tables

        make_context(self.outbox_url, broker_url=f"sqlite:///{self.broker}").dispose()
        consumer = BoundedContext(GROUP, database_url=f"sqlite:///{self.inbox}")
        consumer.create_tables()
        effect_tables.create_all(consumer.engine)
        consumer.dispose()
        if self.name == "raw":
            create_files(self.broker, self.inbox)

    def start(self, role: str) -> subprocess.Popen[str]:
        if self.name == "raw":
            arguments = (
                [str(self.outbox), str(self.broker)]
                if role == "relay"
                else [str(self.broker), str(self.inbox), GROUP]
            )
            command = [sys.executable, str(HERE / "_embedded_raw.py"), role, *arguments]
        else:
            target = "user_path_app:producer" if role == "relay" else "user_path_app:consumer"
            command = [sys.executable, "-m", "tidings", role, target]
        environment = {
            **os.environ,
            "USER_PATH_PRODUCER_DB": self.outbox_url,
            "USER_PATH_CONSUMER_DB": f"sqlite:///{self.inbox}",
            "USER_PATH_BROKER": f"sqlite:///{self.broker}",
            "USER_PATH_STYLE": "handle",
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        }
        return start_process(command, HERE, environment)

    def effects(self) -> dict[str, float]:
        with contextlib.closing(sqlite3.connect(self.inbox)) as db:
            return dict(db.execute("SELECT event_id, at FROM bench_user_effects").fetchall())

    def wait_for_effects(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with contextlib.closing(sqlite3.connect(self.inbox, timeout=30)) as db:
            while time.monotonic() < deadline:
                (done,) = db.execute("SELECT count(*) FROM bench_user_effects").fetchone()
                if done >= count:
                    return
                time.sleep(0.1)
        raise RuntimeError(f"{self.name}: fewer than {count} effects after {timeout:.0f} s")


def throughput_round(side: Side, events: int) -> float:
    """Events per second through ``side`` over a backlog of ``events``."""
    side.reset()
    outbox = BoundedContext("bench", database_url=side.outbox_url)
    insert_backlog(outbox.engine, events)
    outbox.dispose()
    consumer = side.start("consume")
    relay = side.start("relay")
    try:
        side.wait_for_effects(events, timeout=events / 200 + 60)
    finally:
        stop_processes(relay, consumer)
    stamps = list(side.effects().values())
    if len(stamps) != events:
        raise RuntimeError(f"{side.name}: {len(stamps)} effects for {events} events")
    return events / (max(stamps) - min(stamps))


def latency_run(side: Side, seconds: float) -> dict[str, float]:
    """Commit-to-effect percentiles through ``side`` at a paced ``RATE`` events/s."""
    count = int(seconds * RATE)
    side.reset()
    consumer = side.start("consume")
    relay = side.start("relay")
    try:
        time.sleep(1.0)  # both connected and idle before the first commit
        before = [_cpu_seconds(process.pid) for process in (relay, consumer)]
        committed = asyncio.run(paced_commits(side.outbox_url, count))
        side.wait_for_effects(count, timeout=60)
        after = [_cpu_seconds(process.pid) for process in (relay, consumer)]
    finally:
        stop_processes(relay, consumer)
    figures = percentiles(committed, side.effects())
    for role, start, end in zip(("relay", "consumer"), before, after, strict=True):
        if start is not None and end is not None:
            figures[f"{role}_cpu_us"] = round((end - start) / count * 1e6)
    return figures


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc``), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="10,000 events x 1 round; 5 s")
    size.add_argument("--smoke", action="store_true", help="1,000 events x 1 round; 2 s")
    parser.add_argument("--events", type=int, help="backlog per round (default 50,000)")
    parser.add_argument("--rounds", type=int, help="throughput rounds (default 3)")
    parser.add_argument("--seconds", type=float, help="paced latency run (default 15)")
    arguments = parser.parse_args()
    events, rounds, seconds = (
        (1_000, 1, 2.0)
        if arguments.smoke
        else (10_000, 1, 5.0)
        if arguments.quick
        else (50_000, 3, 15.0)
    )
    events = arguments.events or events
    rounds = arguments.rounds or rounds
    seconds = arguments.seconds or seconds
    best = {"raw": 0.0, "tidings": 0.0}
    print(f"{events:,} events x {rounds} rounds; {seconds:.0f} s at {RATE}/s")
    with tempfile.TemporaryDirectory(prefix="tidings-embedded-") as directory:
        sides = {name: Side(name, Path(directory)) for name in best}
        for round_number in range(rounds):
            order = list(sides) if round_number % 2 == 0 else list(reversed(sides))
            rates = {name: throughput_round(sides[name], events) for name in order}
            for name, rate in rates.items():
                best[name] = max(best[name], rate)
            print(
                f"round {round_number + 1}: raw {rates['raw']:,.0f}/s, "
                f"tidings {rates['tidings']:,.0f}/s ({rates['tidings'] / rates['raw']:.2f})",
                flush=True,
            )
        paced = {name: latency_run(sides[name], seconds) for name in ("raw", "tidings")}
    figures = {
        "events_per_s": round(best["tidings"]),
        "ratio": round(best["tidings"] / best["raw"], 3),
        "p50_ms": paced["tidings"]["p50_ms"],
        "p99_ms": paced["tidings"]["p99_ms"],
        "max_ms": paced["tidings"]["max_ms"],
        "raw_per_s": round(best["raw"]),
        "raw_p50_ms": paced["raw"]["p50_ms"],
        "raw_p99_ms": paced["raw"]["p99_ms"],
        "events": events,
        "rounds": rounds,
        "paced_events": paced["tidings"]["events"],
        # CPU per paced event of each process, both sides: what idling costs between events
        **{
            f"{prefix}{role}_cpu_us": paced[name][f"{role}_cpu_us"]
            for name, prefix in (("tidings", ""), ("raw", "raw_"))
            for role in ("relay", "consumer")
            if f"{role}_cpu_us" in paced[name]
        },
    }
    for key, (sense, target) in TARGETS.items():
        print(f"{key} {figures[key]} (target {sense} {target:,})")
    emit(figures)


if __name__ == "__main__":
    main()
