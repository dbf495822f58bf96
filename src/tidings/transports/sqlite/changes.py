"""A SQLite file's change counter, read from the event loop.

``PRAGMA data_version`` changes whenever another connection commits to the file. On a
WAL file reading it is a look at shared memory, microseconds, with no disk I/O: cheap
enough to poll every few milliseconds on the event loop, where a query through a
worker thread costs a thread hand-off each time. The connection waits for no lock
(``busy_timeout`` 0): when the file is locked exclusively (recovery, ``VACUUM``) the
counter reads as unknown, and callers treat that as "may have changed".
"""

from __future__ import annotations

import sqlite3


class ChangeCounter:
    """A connection of its own to ``path``, only ever asked for ``data_version``."""

    def __init__(self, path: str) -> None:
        self._db: sqlite3.Connection | None = sqlite3.connect(path, timeout=0, isolation_level=None)

    def version(self) -> int | None:
        """The counter now, or None when it cannot be read right now."""
        if self._db is None:
            return None
        try:
            return int(self._db.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            return None

    def value(self, query: str) -> int | None:
        """The integer ``query`` (a cheap, indexed, one-row ``SELECT``) returns; None when
        it cannot be run right now, which callers treat as "may have changed".

        Every row is fetched so that the statement finishes and its read transaction
        ends with it: an open read would hold back the WAL checkpoint.
        """
        if self._db is None:
            return None
        try:
            rows = self._db.execute(query).fetchall()
        except sqlite3.Error:
            return None
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    def close(self) -> None:
        """Close the connection; :meth:`version` reads None from then on."""
        if self._db is not None:
            self._db.close()
            self._db = None
