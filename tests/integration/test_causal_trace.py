"""tidings trace over four contexts: records written by the relay and the consumers are
joined into one tree per use case, with the gaps and dead letters shown as such.

catalog changes prices; basket handles each change and publishes one event per updated
basket item; audit handles those and fails on basket-3 (dead-lettered at once); late
subscribes to the price changes but never runs (its handling is a gap). Run on the
embedded SQLite broker with SQLite files, and on RabbitMQ with PostgreSQL databases.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from tests.support import consumer_app
from tests.support.consumer_infra import (
    declare,
    new_tag,
    postgres_database,
    rabbitmq_url,
    remove_rabbitmq,
    running,
    wait_until,
)
from tests.support.relay_processes import ROOT, TIDINGS
from tidings import BoundedContext, IntegrationEventHandler, RetryPolicy
from tidings.causality.auditing import audit
from tidings.causality.records import Outcome
from tidings.causality.render import as_json, as_mermaid
from tidings.causality.tree import Status, trace
from tidings.consumer import Consumer
from tidings.errors import TraceNotFoundError
from tidings.outbox import Relay
from tidings.persistence.tables import handled_records, outbox, published_records


@dataclass
class Stack:
    databases: dict[str, str]
    broker_url: str
    names: dict[str, str]


ROLES = ("catalog", "basket", "audit", "late")


@pytest.fixture(params=["sqlite-broker+sqlite", "rabbitmq+postgres"])
async def stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    tag = new_tag()
    names = {role: f"{role}_{tag}" for role in ROLES}
    if request.param == "sqlite-broker+sqlite":
        databases = {role: f"sqlite:///{tmp_path / role}.db" for role in ROLES}
        yield Stack(databases, f"sqlite:///{tmp_path / 'broker.db'}", names)
        return
    with (
        postgres_database(f"{tag}_catalog") as catalog,
        postgres_database(f"{tag}_basket") as basket,
        postgres_database(f"{tag}_audit") as audit_db,
        postgres_database(f"{tag}_late") as late,
    ):
        databases = {"catalog": catalog, "basket": basket, "audit": audit_db, "late": late}
        try:
            yield Stack(databases, rabbitmq_url(tag), names)
        finally:
            await remove_rabbitmq(tag, [names["basket"], names["audit"], names["late"]])


class AuditItemPrice(IntegrationEventHandler):
    refuse = True

    def handle(self, event: consumer_app.BasketItemPriceUpdatedIntegrationEvent) -> None:
        if self.refuse and event.basket_id == "basket-3":
            raise ValueError("basket-3 is not audited")


class LateCopy(IntegrationEventHandler):
    def handle(self, event: consumer_app.ProductPriceChangedIntegrationEvent) -> None:
        """Never runs: its context's consumer is not started."""


def _contexts(stack: Stack) -> dict[str, BoundedContext]:
    catalog = consumer_app.build_catalog(
        stack.databases["catalog"], stack.broker_url, stack.names["catalog"]
    )
    basket = consumer_app.build_basket(
        stack.databases["basket"], stack.broker_url, stack.names["basket"], handler="update"
    )
    found = {"catalog": catalog, "basket": basket}
    for role, handler in (("audit", AuditItemPrice()), ("late", LateCopy())):
        context = BoundedContext(
            stack.names[role], database_url=stack.databases[role], broker_url=stack.broker_url
        )
        context.create_tables()
        context.subscribe(handler)
        found[role] = context
    return found


async def test_trace_follows_each_use_case_through_every_context(stack: Stack) -> None:
    contexts = _contexts(stack)
    catalog, basket, audit_context = contexts["catalog"], contexts["basket"], contexts["audit"]
    fast = RetryPolicy(initial_delay=0.01, max_delay=0.05)
    with basket.engine.begin() as connection:
        connection.execute(
            insert(consumer_app.basket_items),
            [
                {"basket_id": "basket-1", "product_id": "product-1", "price": "10", "updates": 0},
                {"basket_id": "basket-2", "product_id": "product-1", "price": "10", "updates": 0},
                {"basket_id": "basket-3", "product_id": "product-2", "price": "3", "updates": 0},
            ],
        )
    basket_consumer = Consumer(basket, retry=fast)
    audit_consumer = Consumer(audit_context, retry=fast, max_attempts=1)
    late_consumer = Consumer(contexts["late"])
    try:
        for consumer in (basket_consumer, audit_consumer, late_consumer):
            await declare(consumer)
        change_price = consumer_app.ChangeProductPrice(catalog)
        for product_id, price in [("product-1", "12.50"), ("product-2", "3.10")]:
            with catalog.transaction():
                change_price.execute(product_id, Decimal(price))
        with catalog.engine.connect() as connection:
            first, second = connection.execute(
                select(outbox.c.correlation_id, outbox.c.event_id).order_by(outbox.c.position)
            ).all()
        everywhere = list(contexts.values())

        # Still in catalog's outbox: the trace shows the event as waiting there.
        pending = trace(everywhere, first.correlation_id)
        assert pending.status is Status.IN_PROGRESS
        assert pending.events[0].pending
        assert "waits in the outbox of" in pending.gaps[0]

        assert await Relay(catalog).drain() == 2
        async with running(basket_consumer):
            await wait_until(lambda: basket_consumer.stats.handled == 2, what="two changes")
        assert await Relay(basket).drain() == 3
        async with running(audit_consumer):
            await wait_until(
                lambda: (
                    audit_consumer.stats.handled == 2 and audit_consumer.stats.dead_lettered == 1
                ),
                what="two audits and one dead letter",
            )

        one = trace(everywhere, first.correlation_id)
        assert one.status is Status.IN_PROGRESS  # late never ran
        [price_changed] = one.events
        assert price_changed.context == stack.names["catalog"]
        assert price_changed.published_at is not None
        by_context = {h.context: h for h in price_changed.handlings}
        assert set(by_context) == {stack.names["basket"], stack.names["late"]}
        assert by_context[stack.names["late"]].outcome is None
        handled = by_context[stack.names["basket"]]
        assert handled.outcome == Outcome.HANDLED and handled.latency_s is not None
        assert [e.event_type for e in handled.published] == [consumer_app.ITEM_PRICE_UPDATED] * 2
        for item_event in handled.published:
            [audited] = item_event.handlings
            assert (audited.context, audited.outcome) == (stack.names["audit"], Outcome.HANDLED)
        assert any(f"not yet handled by {stack.names['late']}" in gap for gap in one.gaps)

        two = trace(everywhere, second.event_id)  # an event id finds its use case too
        assert two.correlation_id == second.correlation_id
        assert two.status is Status.DEAD_LETTERED
        [item_event] = two.events[0].handlings[0].published
        [dead] = item_event.handlings
        assert (dead.outcome, dead.reason) == (Outcome.DEAD_LETTERED, "handler_failed")
        assert "basket-3 is not audited" in str(dead.detail)
        assert f"dead-lettered in {stack.names['audit']}: handler_failed" in two.gaps[-1]
        assert trace(everywhere, item_event.event_id).correlation_id == second.correlation_id

        document = as_json(two)
        ids = {node["id"] for node in document["nodes"]}
        assert len(ids) == len(document["nodes"]) == 1 + 2 + 3  # use case, events, handlings
        assert all(edge["from"] in ids and edge["to"] in ids for edge in document["edges"])
        assert {edge["kind"] for edge in document["edges"]} == {"published", "delivered"}
        diagram = as_mermaid(two)
        assert diagram.startswith("sequenceDiagram\n")
        assert f"-x{stack.names['audit']}: {consumer_app.ITEM_PRICE_UPDATED}" in diagram

        # Replayed once its handler accepts it, the dead letter shows handled.
        audit_context.integration_handlers[0].refuse = False
        assert await Consumer(audit_context).replay() == (1, 0)
        replayed = trace(everywhere, second.correlation_id)
        [item_event] = replayed.events[0].handlings[0].published
        assert item_event.handlings[0].outcome == Outcome.HANDLED
        assert replayed.status is Status.IN_PROGRESS  # late still has not run

        found = audit(everywhere)
        assert (found.missing, found.invented, len(found.traces)) == (0, 0, 2)
        assert len(found.recorded_handlings) == 2 + 3  # basket 2, audit 3 (one replayed)
        with pytest.raises(TraceNotFoundError, match="no correlation id or event id"):
            trace(everywhere, "no-such-id")
    finally:
        for context in contexts.values():
            await context.adispose()


async def test_a_redelivered_event_is_recorded_as_a_duplicate(tmp_path: Path) -> None:
    broker = f"sqlite:///{tmp_path / 'broker.db'}"
    catalog = consumer_app.build_catalog(f"sqlite:///{tmp_path / 'c.db'}", broker)
    basket = consumer_app.build_basket(f"sqlite:///{tmp_path / 'b.db'}", broker)
    consumer = Consumer(basket)
    try:
        await declare(consumer)
        with catalog.transaction():
            consumer_app.ChangeProductPrice(catalog).execute("product-1", Decimal("2"))
        assert await Relay(catalog).drain() == 1
        with catalog.engine.connect() as connection:
            row = connection.execute(select(published_records)).mappings().one()
        async with running(consumer):
            await wait_until(lambda: consumer.stats.handled == 1, what="the event")
        # The same event published again (as a relay re-sends what it could not mark):
        # the inbox skips it, and the skip is recorded where it is decided.
        item = consumer_app.ProductPriceChangedIntegrationEvent(
            event_id=row["event_id"], product_id="product-1", price=Decimal("2")
        )
        with catalog.transaction(correlation_id=row["correlation_id"]):
            catalog.integration_events.publish(item)
        assert await Relay(catalog).drain() == 1
        again = Consumer(basket)
        async with running(again):
            await wait_until(lambda: again.stats.duplicates == 1, what="the duplicate")
        with basket.engine.connect() as connection:
            outcomes = connection.execute(
                select(handled_records.c.outcome).order_by(handled_records.c.record_id)
            ).scalars()
            assert list(outcomes) == ["handled", "duplicate"]
        handling = trace([catalog, basket], row["event_id"]).events[0].handlings[0]
        assert (handling.outcome, handling.duplicates) == (Outcome.HANDLED, 1)

        assert basket.purge_causal_records() == 0  # younger than causal_retention
        assert basket.purge_causal_records(timedelta(0)) == 2
        assert catalog.purge_causal_records(timedelta(0)) == 1
        with pytest.raises(TraceNotFoundError):
            trace([catalog, basket], row["event_id"])
    finally:
        await catalog.adispose()
        await basket.adispose()


def test_the_command_exits_2_for_an_unknown_id(tmp_path: Path) -> None:
    env = {
        **os.environ,
        consumer_app.DATABASE_ENV: f"sqlite:///{tmp_path / 'basket.db'}",
        consumer_app.BROKER_ENV: f"sqlite:///{tmp_path / 'broker.db'}",
    }
    app = "tests.support.consumer_app:context"
    subprocess.run([TIDINGS, "db", "init", app], cwd=ROOT, env=env, check=True, timeout=60)
    done = subprocess.run(
        [TIDINGS, "trace", app, "--id", "no-such-id"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "no correlation id or event id 'no-such-id'" in done.stderr


def test_the_latest_use_cases_table_keeps_every_value_whole_at_80_columns(
    tmp_path: Path,
) -> None:
    """trace.md's ``--last`` table: piped output is 80 columns wide, narrower than its rows;
    a context, start or status cut to "catalog_…" or "in…" would say nothing."""
    name = "catalog_with_a_long_name"
    shop = f"""from tests.support import consumer_app

catalog = consumer_app.build_catalog("sqlite:///catalog.db", "sqlite:///broker.db", {name!r})
"""
    (tmp_path / "shop.py").write_text(shop)
    catalog = consumer_app.build_catalog(
        f"sqlite:///{tmp_path / 'catalog.db'}", f"sqlite:///{tmp_path / 'broker.db'}", name
    )
    with catalog.transaction():
        consumer_app.ChangeProductPrice(catalog).execute("p-1", Decimal("2"))
    with catalog.engine.connect() as connection:
        correlation_id, created_at = connection.execute(
            select(outbox.c.correlation_id, outbox.c.created_at)
        ).one()
    catalog.dispose()
    done = subprocess.run(
        [TIDINGS, "trace", "shop:catalog", "--last", "1"],
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "80", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    [row] = [line for line in done.stdout.splitlines() if correlation_id in line]
    assert name in row and "in_progress" in row
    assert created_at.strftime("%Y-%m-%d %H:%M:%S") in row


def test_the_latest_zero_use_cases_is_a_usage_error() -> None:
    """``--last 0`` listed one use case; N latest is at least one."""
    done = subprocess.run(
        [TIDINGS, "trace", "tests.support.consumer_app:context", "--last", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--last" in done.stderr


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
async def test_archiving_relay_records_what_it_archives(database: str, tmp_path: Path) -> None:
    broker = f"sqlite:///{tmp_path / 'broker.db'}"
    with contextlib.ExitStack() as stack:
        url = (
            f"sqlite:///{tmp_path / 'catalog.db'}"
            if database == "sqlite"
            else stack.enter_context(postgres_database(f"{new_tag()}_archive"))
        )
        catalog = consumer_app.build_catalog(url, broker)
        try:
            for price in ("1", "2", "3"):
                with catalog.transaction():
                    consumer_app.ChangeProductPrice(catalog).execute("p-1", Decimal(price))
            assert await Relay(catalog, retention="archive").drain() == 3
            with catalog.engine.connect() as connection:
                archived = connection.execute(
                    select(outbox.c.event_id, outbox.c.published_at).order_by(outbox.c.position)
                ).all()
                recorded = dict(
                    connection.execute(
                        select(published_records.c.event_id, published_records.c.published_at)
                    ).all()
                )
            assert [published for _, published in archived] == [recorded[e] for e, _ in archived]
            assert len(recorded) == 3
        finally:
            await catalog.adispose()
