"""``tidings consume APP --status``: which consumer process reads which shard of a group."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from tidings.cli.common import console, iso
from tidings.cli.outbox import _ranges

if TYPE_CHECKING:
    from tidings.context import BoundedContext
    from tidings.persistence.leases import LeaseHolder


def show_shard_owners(context: BoundedContext, group: str, *, as_json: bool) -> None:
    """Print the shard count of ``group`` and its consumer processes with their shards.

    Read from the context's database (the leases), so it works while the consumers run,
    and shows the ones killed (their leases expired, their shards not yet taken over).
    """
    from rich.table import Table

    from tidings.consumer.shard_leases import consumer_overview

    async def read() -> tuple[dict[str, int], list[LeaseHolder]]:
        try:
            return await consumer_overview(context.async_engine)
        finally:
            await context.adispose()

    counts, holders = asyncio.run(read())
    count = counts.get(group)
    members = [holder for holder in holders if holder.name == group]
    if as_json:
        print(
            json.dumps(
                {
                    "context": context.name,
                    "group": group,
                    "shards": count,
                    "consumers": [
                        {
                            "owner": member.owner,
                            "shards": list(member.units),
                            "expires_at": iso(member.expires_at),
                            "expired": member.expired,
                            "rate_per_s": member.rate_per_s,
                            "handled_total": member.total,
                        }
                        for member in members
                    ],
                }
            )
        )
        return
    if count is None:
        console.print(
            f"group {group} has no shard leases: its transport is not sharded "
            "(?shards=N), or no consumer of it ran yet"
        )
        return
    free = count - sum(len(member.units) for member in members if not member.expired)
    table = Table(title=f"shards of {group}: {count} ({free} not read by a live consumer)")
    for column in ("owner", "shards", "rate", "handled", "lease"):
        table.add_column(column)
    for member in members:
        lease = f"[red]expired {iso(member.expires_at)}[/]" if member.expired else "live"
        table.add_row(
            member.owner,
            _ranges(member.units),
            f"{member.rate_per_s:.1f}/s",
            str(member.total),
            lease,
        )
    console.print(table)
