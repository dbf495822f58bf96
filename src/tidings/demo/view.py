"""The live view: events flowing per context, relay and consumer lag."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Group
from rich.table import Table
from rich.text import Text
from sqlalchemy import func, select

from tidings.demo.processes import ContextProcess
from tidings.demo.workload import Shop, Workload
from tidings.persistence.tables import dead_letters, inbox, outbox
from tidings.redaction import redact


class LiveView:
    """Renders the state of every context each time rich refreshes the screen."""

    def __init__(self, shop: Shop, processes: dict[str, ContextProcess], workload: Workload):
        self.shop = shop
        self.processes = processes
        self.workload = workload
        self.phase = "starting"
        self.max_lag: dict[str, float] = dict.fromkeys(shop.modules, 0.0)

    def sample(self) -> list[tuple[str, int, float, int, int]]:
        """(context, pending outbox rows, relay lag s, events handled, dead letters)."""
        rows = []
        now = datetime.now(UTC)
        for name, module in self.shop.modules.items():
            with module.context.read_connection() as connection:
                pending, oldest = connection.execute(
                    select(func.count(), func.min(outbox.c.created_at)).where(
                        outbox.c.published_at.is_(None)
                    )
                ).one()
                handled = connection.execute(select(func.count()).select_from(inbox)).scalar_one()
                letters = connection.execute(
                    select(func.count()).select_from(dead_letters)
                ).scalar_one()
            lag = 0.0
            if oldest is not None:
                lag = max((now - _aware(oldest)).total_seconds(), 0.0)
            self.max_lag[name] = max(self.max_lag[name], lag)
            rows.append((name, int(pending), lag, int(handled), int(letters)))
        return rows

    def __rich__(self) -> Group:
        table = Table(title=f"tidings demo: {self.phase}", expand=False)
        for column in ("context", "process", "outbox pending", "relay lag", "handled", "dead"):
            table.add_column(column, justify="right" if column != "context" else "left")
        try:
            rows = self.sample()
        except Exception as error:  # a context's database briefly locked; next frame
            return Group(table, Text(f"(sampling: {redact(str(error))})", style="dim"))
        for name, pending, lag, handled, letters in rows:
            process = self.processes.get(name)
            state = "—"
            if process is not None:
                state = f"pid {process.pid}" if process.alive else "[red]down[/]"
                if process.kills:
                    state += f" ([yellow]{process.kills} killed[/])"
            table.add_row(
                name,
                state,
                str(pending),
                f"{lag:.2f} s",
                str(handled),
                f"[red]{letters}[/]" if letters else "0",
            )
        return Group(table, Text(f"use cases run by the shop: {self.workload.commands}"))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
