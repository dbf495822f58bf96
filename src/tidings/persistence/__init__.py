"""Storage: SQLAlchemy tables, engines and transaction scopes."""

from tidings.persistence.engines import create_asyncio_engine, create_sync_engine
from tidings.persistence.schema import create_tables, create_tables_async
from tidings.persistence.tables import inbox, metadata, outbox, publication_log
from tidings.persistence.transaction import TransactionScope

__all__ = [
    "TransactionScope",
    "create_asyncio_engine",
    "create_sync_engine",
    "create_tables",
    "create_tables_async",
    "inbox",
    "metadata",
    "outbox",
    "publication_log",
]
