"""The broker file's connection: opening it in WAL mode, its tables and partition count,
and the write transaction every change runs in.

Everything here runs on the transport's one worker thread (see
:class:`~tidings.transports.sqlite.transport.SqliteTransport`), never on the event loop.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

from tidings.errors import ConfigurationError
from tidings.transports.base import TransportError
from tidings.transports.sqlite.options import SqliteBrokerOptions

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS tidings_broker_log (
        log_offset INTEGER PRIMARY KEY AUTOINCREMENT,
        partition_no INTEGER NOT NULL,
        source TEXT NOT NULL,
        type TEXT NOT NULL,
        partition_key TEXT,
        body BLOB NOT NULL,
        created_at REAL NOT NULL
    )""",
    """CREATE INDEX IF NOT EXISTS tidings_broker_log_by_partition
        ON tidings_broker_log (partition_no, log_offset)""",
    """CREATE TABLE IF NOT EXISTS tidings_broker_settings (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS tidings_broker_groups (
        group_name TEXT NOT NULL,
        event_type TEXT NOT NULL,
        PRIMARY KEY (group_name, event_type)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS tidings_broker_partitions (
        group_name TEXT NOT NULL,
        partition_no INTEGER NOT NULL,
        committed INTEGER NOT NULL,
        owner TEXT,
        lease_until REAL NOT NULL DEFAULT 0,
        PRIMARY KEY (group_name, partition_no)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS tidings_broker_consumers (
        group_name TEXT NOT NULL,
        consumer_id TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (group_name, consumer_id)
    ) WITHOUT ROWID""",
)


class BrokerConnection:
    """One open connection to the broker file, and its write transactions."""

    def __init__(self, path: str, options: SqliteBrokerOptions) -> None:
        self.path = path
        self.options = options
        self.partitions = options.partitions or 8
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        assert self._db is not None, "only called on the worker thread after connect"
        return self._db

    @contextlib.contextmanager
    def _write(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction.

        ``durable`` (publishes, group declarations) commits at the file's ``synchronous``
        setting; the rest (committed offsets, leases, retention) commits without
        waiting for the disk. A power loss can then only roll back a suffix of those
        (WAL frames are checksummed in sequence, and a durable commit syncs every frame
        before it): acknowledgements come again, which the inbox absorbs; nothing
        published is lost.
        """
        db = self._conn()
        strict = durable and self.options.synchronous == "full"
        if strict:
            db.execute("PRAGMA synchronous = FULL")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
                    db.execute("ROLLBACK")
                raise
            try:
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
        finally:
            if strict:
                db.execute("PRAGMA synchronous = NORMAL")

    def open(self) -> None:
        """Open (creating if needed) the file and its tables; learn its partition count."""
        try:
            db = sqlite3.connect(self.path, timeout=self.options.busy_timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise TransportError(
                f"cannot open the SQLite broker file {self.path!r}: {exc}; check that its "
                "directory exists and is writable"
            ) from exc
        self._db = db
        try:
            self.partitions = self._prepare(db)
        except BaseException:
            db.close()
            self._db = None
            raise

    def _prepare(self, db: sqlite3.Connection) -> int:
        db.execute(f"PRAGMA busy_timeout = {int(self.options.busy_timeout * 1000)}")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise TransportError(
                f"SQLite broker {self.path}: WAL mode is unavailable (got {mode!r}); "
                "put the file on a local filesystem"
            )
        db.execute("PRAGMA synchronous = NORMAL")  # durable writes ask for more (_write)
        with self._write(durable=True):
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute(
                "INSERT OR IGNORE INTO tidings_broker_settings (name, value) "
                "VALUES ('partitions', ?)",
                (str(self.partitions),),
            )
            (stored,) = db.execute(
                "SELECT value FROM tidings_broker_settings WHERE name = 'partitions'"
            ).fetchone()
        stored_partitions = int(stored)
        requested = self.options.partitions
        if requested is not None and requested != stored_partitions:
            raise ConfigurationError(
                f"the SQLite broker {self.path} was created with {stored_partitions} "
                f"partitions, the URL asks for {requested}; remove ?partitions= or "
                "set it to the file's count (it cannot change: keys would change partition)"
            )
        return stored_partitions

    def close(self) -> None:
        """Close the connection (the file and its WAL stay for the other processes)."""
        if self._db is not None:
            self._db.close()
            self._db = None
