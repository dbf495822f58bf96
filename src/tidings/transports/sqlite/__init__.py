"""An embedded broker in a SQLite file (``sqlite:///path/to/broker.db``).

The zero-install default: several processes on one machine publish to and consume
from the same file, with no server to run. The file is in WAL mode, so readers never
block the single writer and a write never waits for readers.

Tables (all prefixed ``tidings_broker_``, created on connect)
    ``log``: the durable log, one row per event: ``log_offset`` (AUTOINCREMENT, so
    offsets only grow, even across deletions), ``partition_no``, ``source``, ``type``,
    ``partition_key``, ``body`` (the structured-mode CloudEvent) and ``created_at``.
    ``partitions``: per consuming group and partition, the committed offset and the
    lease (``owner``, ``lease_until``). ``consumers``: live consumers per group, for
    sharing partitions fairly. ``groups``: the event types each group declared.
    ``settings``: the partition count the file was created with.

Publishing
    :meth:`SqliteTransport.publish_batch` inserts the whole batch in one
    ``BEGIN IMMEDIATE`` transaction and returns after ``COMMIT``: that commit is the
    broker's confirmation. Two producer processes are serialised by SQLite's write
    lock (each waits up to ``busy_timeout``); a batch that cannot get the lock raises
    :class:`~tidings.transports.base.PublishNotConfirmedError` and nothing of it was
    written. With ``synchronous=full`` (the default) a confirmed batch also survives
    an OS crash or power loss; ``synchronous=normal`` is faster and survives any
    process crash, but the last commits may be lost if the machine goes down.

Partitions and per-key order
    Each event goes to partition ``crc32(key) % partitions`` where the key is
    ``CloudEvent.subject`` (the source for keyless events); the count is fixed when
    the file is created (``?partitions=``, default 8). A group keeps, per partition,
    the offset up to which everything is acknowledged. Within a group a partition is
    leased to one consumer at a time; that consumer reads the partition's rows in
    offset order from the committed offset and delivers them in that order.
    Offsets are assigned in commit order (one writer at a time), so the same key is
    delivered in the order it was published, whichever consumer holds its partition,
    and a new holder resumes exactly where the committed offset says.

Consumer groups
    ``declare_subscription(group, types)`` records the group with every partition's
    committed offset at the start of the log: a group declared after events were
    published still receives every row the file keeps (fan-out: every group reads the
    whole log). The log is shared: a consumer skips rows of types it did not subscribe
    to by their ``type`` column, without reading their body (counted in
    ``Transport.skipped``), and the committed offset moves past them, so every
    consumer of a group should subscribe to the same types. The ``type`` column is the
    delivery's ``routed_type``.

Acknowledgements and redelivery
    An ack is recorded in memory; the committed offset advances to just below the
    oldest unacknowledged delivery of the partition and is written to the file when
    the consumer next reads the log, on every heartbeat and when it stops. Acking
    therefore costs no write of its own; the price is that a crash redelivers what
    was acknowledged since the last write (at-least-once: the inbox makes effects
    happen once). These bookkeeping writes (committed offsets, leases, retention)
    do not wait for the disk whatever ``synchronous`` says: a power loss can roll
    back only the last of them, never a confirmed publish, so it too ends in
    redelivery, not loss. ``nack(requeue=True)`` rewinds the partition to the nacked offset:
    it and every later delivery of the partition come again, in order, marked
    ``redelivered``. ``nack(requeue=False)`` counts as an ack.

Leases, sharing and crashes
    Each consumer heartbeats every ``lease / 4`` seconds: it renews its leases and
    its consumer row, writes committed offsets, and takes or gives partitions so that
    each live consumer holds ``ceil(partitions / consumers)``. A partition is handed
    over only once the giving consumer has no unacknowledged delivery in it, so
    rebalancing never reorders a key. A consumer killed with SIGKILL simply stops
    renewing: after ``lease`` seconds (default 15) its partitions are free and the
    others take them over from the committed offset, redelivering what it had not
    committed (deliveries that may have been seen before are marked ``redelivered``).

What it trades away
    Parallelism within a group is capped at the partition count; a slow message
    holds up the other keys of its partition (head-of-line blocking); a crashed
    consumer's partitions wait for its lease to expire; and a consumer stalled for
    longer than its lease (e.g. a suspended process) may overlap with the new holder,
    so a key's messages can then be processed twice and interleaved. Heartbeats run
    on the consumer's event loop (the iterator yields to it every 10 ms of busy
    delivery), so a handler that blocks the loop for longer than the lease has the
    same effect: give such handlers a thread, or a longer ``lease``. The broker is
    for one machine: WAL needs shared memory, so not a network filesystem. Only one
    writer commits at a time, which bounds publish throughput.

Retention
    Every ``retention`` seconds (default 60, ``0`` turns it off) a consumer deletes,
    per partition, the rows at or below the smallest committed offset of all groups:
    rows no group will read again. Nothing is deleted while no group is declared.
    :meth:`SqliteTransport.compact` does the same on demand.

Consumers poll with a cheap change check (``PRAGMA data_version``, plus a wake-up
from publishes through the same transport) every 2 ms for a second after work was
last found, then at an interval that doubles up to ``poll_interval`` (default 0.1 s)
while idle: events a few milliseconds apart wait about a millisecond each. The check
reads shared memory through a connection of its own, on the event loop
(:mod:`~tidings.transports.sqlite.changes`); every other SQLite call runs on one worker
thread per transport, never on the event loop.

URL options: ``partitions``, ``lease``, ``poll_interval``, ``busy_timeout`` (seconds),
``retention``, ``synchronous`` (``full`` or ``normal``), ``batch`` (rows read per
partition at a time), ``max_unacked`` (unacknowledged deliveries per partition
before reading pauses). Example: ``sqlite:///var/broker.db?partitions=16&lease=5``.
"""

from __future__ import annotations

from tidings.transports.sqlite.options import PartitionStatus, SqliteBrokerOptions
from tidings.transports.sqlite.transport import SqliteTransport

__all__ = ["PartitionStatus", "SqliteBrokerOptions", "SqliteTransport"]
