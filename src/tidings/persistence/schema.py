"""Creating the tidings tables in a context's database (at the latest schema version)."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from tidings.persistence.migrations import upgrade, upgrade_async
from tidings.persistence.tables import metadata


def create_tables(engine: Engine) -> list[str]:
    """Create the tidings tables, or upgrade older ones; returns every tidings table name.

    A new database gets the latest tables directly, stamped with their version; one
    holding older tidings tables is upgraded (:mod:`tidings.persistence.migrations`).
    """
    upgrade(engine)
    return sorted(metadata.tables)


async def create_tables_async(engine: AsyncEngine) -> list[str]:
    """Asyncio flavour of :func:`create_tables`."""
    await upgrade_async(engine)
    return sorted(metadata.tables)
