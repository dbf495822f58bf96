"""The application ``benchmarks/user_path.py`` runs through the CLI, written as the docs show.

``tidings relay user_path_app:producer`` forwards the producing context's outbox;
``tidings consume user_path_app:consumer`` runs one handler that writes one effect row
per event through the context's session, in the plain ``handle`` style of the tutorial
(``USER_PATH_STYLE=handle``, the default) or with ``handle_batch`` (``batch``). The
effect row records ``time.monotonic()`` when the handler ran, which the benchmark
compares with the moment the producer's commit returned.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from sqlalchemy import BigInteger, Column, Float, MetaData, String, Table, insert

from _relay_common import ThingUpdatedIntegrationEvent
from tidings import BoundedContext, IntegrationEventHandler

effect_tables = MetaData()
effects = Table(
    "bench_user_effects",
    effect_tables,
    Column("event_id", String(64), primary_key=True),
    Column("thing_id", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("at", Float, nullable=False),
)

producer = BoundedContext(
    "bench",
    database_url=os.environ.get("USER_PATH_PRODUCER_DB", "sqlite:///bench-producer.db"),
    broker_url=os.environ.get("USER_PATH_BROKER"),
)
consumer = BoundedContext(
    "bench-user",
    database_url=os.environ.get("USER_PATH_CONSUMER_DB", "sqlite:///bench-consumer.db"),
    broker_url=os.environ.get("USER_PATH_BROKER"),
)


class RecordEffect(IntegrationEventHandler):
    """One effect row per event, the way the tutorial's handlers write."""

    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def handle(self, event: ThingUpdatedIntegrationEvent) -> None:
        self._context.session.execute(
            insert(effects).values(
                event_id=str(event.event_id),
                thing_id=event.thing_id,
                seq=event.seq,
                at=time.monotonic(),
            )
        )


class RecordEffects(RecordEffect):
    """The same effect, a micro-batch's rows in one statement (``handle_batch``)."""

    def handle_batch(self, events: Sequence[ThingUpdatedIntegrationEvent]) -> None:
        now = time.monotonic()
        self._context.session.execute(
            insert(effects),
            [
                {"event_id": str(e.event_id), "thing_id": e.thing_id, "seq": e.seq, "at": now}
                for e in events
            ],
        )


style = os.environ.get("USER_PATH_STYLE", "handle")
consumer.subscribe(RecordEffects(consumer) if style == "batch" else RecordEffect(consumer))
