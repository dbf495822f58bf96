"""The context the relay acceptance tests relay from, shared with relay subprocesses.

Tests and the processes they start (``tidings relay tests.support.relay_app:context``,
``python -m tests.support.relay_runner``) import this module, so both sides agree on
the contract and on where the outbox and the broker are: the URLs travel in the
environment variables below.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import ClassVar

from sqlalchemy.exc import OperationalError

from tidings import BoundedContext, IntegrationEvent
from tidings.contracts.cloudevents import CloudEvent

DATABASE_ENV = "TIDINGS_RELAY_TEST_DATABASE_URL"
BROKER_ENV = "TIDINGS_RELAY_TEST_BROKER_URL"
NAME = "relaytest"
EVENT_TYPE = "relaytest.meter.ticked"


class MeterTickedIntegrationEvent(IntegrationEvent):
    """One tick of a meter; ``seq`` is global commit order, ``meter_id`` the partition key."""

    event_type: ClassVar[str] = EVENT_TYPE
    event_version: ClassVar[int] = 1

    meter_id: str
    seq: int


def build(database_url: str, broker_url: str, *, create: bool = True) -> BoundedContext:
    """The context relaying from ``database_url`` to ``broker_url``."""
    context = BoundedContext(NAME, database_url=database_url, broker_url=broker_url)
    if create:
        context.create_tables()
    return context


def context() -> BoundedContext:
    """The factory ``tidings ... tests.support.relay_app:context`` loads (URLs from env)."""
    return build(os.environ[DATABASE_ENV], os.environ[BROKER_ENV], create=False)


def key_of(seq: int, keys: int) -> str:
    return f"meter-{seq % keys}"


def publish_ticks(
    context: BoundedContext,
    start: int,
    count: int,
    *,
    keys: int = 100,
    per_transaction: int = 100,
) -> int:
    """Commit ticks ``start .. start+count-1`` in transactions of ``per_transaction``.

    A transaction that fails because the database went away (a PostgreSQL restart,
    by this suite or a neighbour sharing the server) is retried until it comes back;
    returns how many transactions were retried.
    """
    end = start + count
    retries = 0
    for first in range(start, end, per_transaction):
        for _ in range(150):  # bounded: 30 s for the database to come back
            try:
                with context.transaction():
                    for seq in range(first, min(first + per_transaction, end)):
                        context.integration_events.publish(
                            MeterTickedIntegrationEvent(meter_id=key_of(seq, keys), seq=seq)
                        )
                break
            except OperationalError:
                retries += 1
                time.sleep(0.2)
        else:
            raise AssertionError("the database did not come back within 30 s")
    return retries


def seq_of(event: CloudEvent) -> int:
    return int(json.loads(event.data_json)["seq"])


def check_arrivals(received: Iterable[CloudEvent], expected: range) -> tuple[int, int]:
    """Assert every seq of ``expected`` arrived, and first arrivals keep per-key order.

    Returns (arrivals, duplicates): how many messages came and how many of them were
    second (or later) copies of an event already received.
    """
    first: dict[str, int] = {}
    by_key: dict[str | None, list[int]] = defaultdict(list)
    arrivals = 0
    for event in received:
        arrivals += 1
        if event.id in first:
            assert first[event.id] == seq_of(event), f"event {event.id} changed its payload"
            continue
        seq = seq_of(event)
        first[event.id] = seq
        by_key[event.subject].append(seq)
    got = set(first.values())
    missing = sorted(set(expected) - got)
    assert not missing, f"{len(missing)} of {len(expected)} events never arrived: {missing[:10]}"
    unexpected = sorted(got - set(expected))
    assert not unexpected, f"events that were never committed arrived: {unexpected[:10]}"
    for key, seqs in by_key.items():
        out_of_order = [(a, b) for a, b in itertools.pairwise(seqs) if a > b]
        assert not out_of_order, f"key {key}: first arrivals out of order at {out_of_order[:3]}"
    return arrivals, arrivals - len(first)
