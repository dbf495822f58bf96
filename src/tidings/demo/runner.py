"""Runs the whole demo: environment, processes, workload, chaos, convergence report."""

from __future__ import annotations

import random
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table
from sqlalchemy import select

from tidings.causality.render import as_tree
from tidings.causality.tree import Trace
from tidings.demo.convergence import Check, check_convergence
from tidings.demo.environment import CONTEXTS, configure
from tidings.demo.processes import ContextProcess
from tidings.demo.view import LiveView
from tidings.demo.workload import Shop, Workload, WorkloadSize, wait_until
from tidings.persistence.tables import inbox, published_records


@dataclass(slots=True)
class DemoOptions:
    size: WorkloadSize = field(default_factory=WorkloadSize)
    folder: Path | None = None
    broker: str | None = None
    database: str | None = None
    chaos: bool = False
    chaos_kills: int = 8
    timeout: float = 180.0
    seed: int = 7
    live: bool = True


@dataclass(slots=True)
class DemoResult:
    checks: list[Check]
    seconds: float
    events_handled: int
    kills: dict[str, int]
    max_lag: dict[str, float]
    order_trace: Trace | None = None
    map_files: list[Path] = field(default_factory=list)

    @property
    def converged(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def events_per_second(self) -> float:
        return self.events_handled / self.seconds if self.seconds else 0.0


class _Chaos(threading.Thread):
    """Kills a random context process with SIGKILL now and then, and restarts it."""

    def __init__(self, processes: dict[str, ContextProcess], seed: int) -> None:
        super().__init__(daemon=True, name="tidings-demo-chaos")
        self.processes = processes
        self.random = random.Random(seed)
        self.stopping = threading.Event()
        self.kills = 0

    def run(self) -> None:
        while not self.stopping.wait(self.random.uniform(0.8, 2.0)):
            victim = self.processes[self.random.choice(list(self.processes))]
            victim.kill()
            self.kills += 1
            if self.stopping.wait(self.random.uniform(0.2, 0.8)):
                victim.start()
                return
            victim.start()


def run_demo(options: DemoOptions, console: Console) -> DemoResult:
    """Run the reference system end to end and report whether every context converged."""
    with tempfile.TemporaryDirectory(prefix="tidings-demo-") as scratch:
        folder = options.folder or Path(scratch)
        configure(folder, database=options.database, broker=options.broker)
        shop = Shop()
        shop.create_tables()
        shop.declare_subscriptions()
        processes = {name: ContextProcess(name, folder) for name in CONTEXTS}
        workload = Workload(shop, options.size, options.seed)
        view = LiveView(shop, processes, workload)
        chaos = _Chaos(processes, options.seed) if options.chaos else None
        started = time.monotonic()
        try:
            for process in processes.values():
                process.start()
            live = Live(view, console=console, refresh_per_second=4, transient=not options.live)
            with live:
                view.phase = "users register, products go on sale"
                workload.seed_shop()
                view.phase = "waiting for Ordering and Basket to copy users and prices"
                wait_until(workload.copies_arrived, options.timeout)
                if chaos is not None:
                    chaos.start()
                view.phase = "shopping: baskets, price changes, orders" + (
                    " [chaos: killing processes]" if chaos else ""
                )
                workload.shop_and_order()
                if chaos is not None:
                    view.phase = f"chaos: at least {options.chaos_kills} kills"
                    wait_until(lambda: chaos.kills >= options.chaos_kills, options.timeout)
                    chaos.stopping.set()
                    chaos.join()
                    for process in processes.values():
                        if not process.alive:
                            process.start()
                view.phase = "waiting for every context to converge"
                wait_until(
                    lambda: all(check.passed for check in check_convergence(shop)),
                    options.timeout,
                    interval=0.5,
                )
                view.phase = "done"
            seconds = time.monotonic() - started
            checks = check_convergence(shop)
            handled = sum(shop.count(name, inbox) for name in CONTEXTS)
            order_trace = _trace_of_an_order(shop)
            map_files = _write_map(shop, folder) if options.folder else []
        finally:
            if chaos is not None:
                chaos.stopping.set()
            for process in processes.values():
                process.stop()
            if options.broker:
                shop.delete_subscriptions()
            shop.dispose()
        return DemoResult(
            checks=checks,
            seconds=seconds,
            events_handled=handled,
            kills={name: p.kills for name, p in processes.items() if p.kills},
            max_lag=view.max_lag,
            order_trace=order_trace,
            map_files=map_files,
        )


def _write_map(shop: Shop, folder: Path) -> list[Path]:
    """The system's event-flow map (``tidings map``) as HTML and Mermaid in ``folder``."""
    from tidings.eventmap import build_map, to_html, to_mermaid

    event_map = build_map(module.context for module in shop.modules.values())
    page, chart = folder / "event-flow.html", folder / "event-flow.mmd"
    page.write_text(to_html(event_map, title="the reference system's event flow"))
    chart.write_text(to_mermaid(event_map))
    return [page, chart]


def _trace_of_an_order(shop: Shop) -> Trace | None:
    """The causal tree of one order placed during the run (its confirmation's use case)."""
    from examples.ecommerce.ordering.contracts import OrderConfirmedIntegrationEvent

    from tidings.causality.tree import trace

    ordering = shop.modules["ordering"].context
    with ordering.read_connection() as connection:
        event_id = connection.execute(
            select(published_records.c.event_id)
            .where(published_records.c.event_type == OrderConfirmedIntegrationEvent.event_type)
            .order_by(published_records.c.published_at)
            .limit(1)
        ).scalar()
    if event_id is None:
        return None
    return trace([module.context for module in shop.modules.values()], event_id)


def report(result: DemoResult, console: Console) -> None:
    """Print the convergence report."""
    console.print()
    table = Table(title="convergence report")
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail")
    for check in result.checks:
        mark = "[green]✓ pass[/]" if check.passed else "[red]✗ FAIL[/]"
        table.add_row(check.name, mark, check.detail)
    console.print(table)
    if result.order_trace is not None:
        console.print("the trace of one order (tidings trace … --id ID):")
        console.print(as_tree(result.order_trace))
    if result.map_files:
        console.print("the event-flow map: " + ", ".join(str(p) for p in result.map_files))
    if result.kills:
        killed = ", ".join(f"{name} x{count}" for name, count in sorted(result.kills.items()))
        console.print(f"chaos: killed with SIGKILL and restarted: {killed}")
    lags = ", ".join(f"{n} {lag:.2f}s" for n, lag in result.max_lag.items())
    console.print(
        f"{result.events_handled} integration events handled in {result.seconds:.1f} s "
        f"({result.events_per_second:.0f} events/s through the whole system); "
        f"max relay lag per context: {lags}"
    )
    verdict = "[green]every context converged[/]" if result.converged else "[red]NOT converged[/]"
    console.print(verdict)
