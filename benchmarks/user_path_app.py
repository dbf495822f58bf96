"""The application ``benchmarks/user_path.py`` runs through the CLI, written as the docs show.

``tidings relay user_path_app:producer`` forwards the producing context's outbox;
``tidings consume user_path_app:consumer`` runs one handler that writes one effect row
per event through the context's session, in one of the styles the docs show
(``USER_PATH_STYLE``): ``handle`` (the default) adds a mapped object to the session in a
plain ``handle``, as the tutorial's "Recording what happened" does; ``execute`` runs
one ``insert`` statement per event in a plain ``handle``; ``batch`` writes a
micro-batch's rows with one statement in ``handle_batch``. The effect row records
``time.monotonic()`` when the handler ran, which the benchmark compares with the
moment the producer's commit returned.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from sqlalchemy import BigInteger, Column, Float, MetaData, String, Table, insert
from sqlalchemy.orm import registry

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


class Effect:
    """What the consumer did for one event (mapped imperatively, as the tutorial maps)."""

    def __init__(self, event_id: str, thing_id: str, seq: int, at: float) -> None:
        self.event_id, self.thing_id, self.seq, self.at = event_id, thing_id, seq, at


registry().map_imperatively(Effect, effects)

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
    """One effect object per event, added to the session (flushed together at commit)."""

    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def handle(self, event: ThingUpdatedIntegrationEvent) -> None:
        self._context.session.add(
            Effect(str(event.event_id), event.thing_id, event.seq, time.monotonic())
        )


class ExecuteEffect(RecordEffect):
    """One ``insert`` statement per event: a round trip to the database each."""

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


STYLES = {"handle": RecordEffect, "execute": ExecuteEffect, "batch": RecordEffects}
consumer.subscribe(STYLES[os.environ.get("USER_PATH_STYLE", "handle")](consumer))
