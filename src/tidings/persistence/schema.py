"""Creating the tidings tables in a context's database."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from tidings.persistence.tables import metadata


def create_tables(engine: Engine) -> list[str]:
    """Create the tidings tables that do not exist yet; returns every tidings table name."""
    metadata.create_all(engine)
    return sorted(metadata.tables)


async def create_tables_async(engine: AsyncEngine) -> list[str]:
    """Asyncio flavour of :func:`create_tables`."""
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    return sorted(metadata.tables)
