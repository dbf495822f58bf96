"""The dashboard app in-process (httpx's ASGI transport) on SQLite: pages, filters,
lookup, and every refusal of an action (no token, not logged in, CSRF, cross-site)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from tests.support.dashboard_app import (
    RecordPrice,
    add_letter,
    add_undecodable_letter,
    build_catalog,
    build_pricing,
    effect_products,
    publish_prices,
    set_relay_lease,
)
from tidings import BoundedContext
from tidings.consumer.dead_letters import DeadLetterStore
from tidings.dashboard import create_app
from tidings.testing import deliver

BASE = "http://dashboard.test"
TOKEN = "s3cret-token"


@pytest.fixture
async def pricing(tmp_path: Path) -> AsyncIterator[BoundedContext]:
    context = build_pricing(f"sqlite:///{tmp_path / 'pricing.db'}")
    RecordPrice.refused.clear()
    yield context
    RecordPrice.refused.clear()
    await context.adispose()
    context.dispose()


def client(*contexts: BoundedContext, token: str | None = TOKEN) -> httpx.AsyncClient:
    app = create_app(list(contexts), token=token)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, "the page has no CSRF field"
    return found.group(1)


async def logged_in(http: httpx.AsyncClient) -> str:
    """Log in with the token; the CSRF token of the new session."""
    form = await http.get("/login")
    done = await http.post(
        "/login", data={"token": TOKEN, "csrf": csrf_of(form)}, headers={"Origin": BASE}
    )
    assert done.status_code == 303, done.text
    return csrf_of(await http.get("/dead-letters"))


async def letters_left(context: BoundedContext) -> set[str]:
    return {letter.letter_id for letter in await DeadLetterStore(context.async_engine).list()}


async def test_overview_shows_counts_and_flags_an_expired_relay_lease_as_stale(
    pricing: BoundedContext,
) -> None:
    for product in ("p1", "p2"):
        await add_letter(pricing, product)
    await set_relay_lease(pricing, "host:1:dead", timedelta(seconds=-30))
    async with client(pricing) as http:
        page = await http.get("/")
        assert page.status_code == 200
        assert "STALE" in page.text and "host:1:dead" in page.text
        row = re.search(r'data-context="pricing">(.*?)</tr>', page.text, re.S)
        assert row and 'class="num letters"' in row.group(1) and ">2</a>" in row.group(1)
        assert "not available on memory:// brokers" in row.group(1)
        await set_relay_lease(pricing, "host:2:alive", timedelta(seconds=30))
        table = await http.get("/overview/table")  # what the page polls
        assert "host:2:alive" in table.text and "active" in table.text
        assert "STALE" not in table.text


async def test_passwords_never_appear_in_pages(tmp_path: Path) -> None:
    # Nothing listens on port 9: the error message (with the URL) is shown, redacted.
    broken = BoundedContext(
        "billing",
        database_url="postgresql://billing:hunter2@127.0.0.1:9/billing",
        broker_url="amqp://guest:rabbitpass@127.0.0.1:5672/",
    )
    async with client(broken) as http:
        page = await http.get("/")
    assert "unreadable" in page.text and "billing:***@127.0.0.1:9" in page.text
    assert "hunter2" not in page.text and "rabbitpass" not in page.text


async def test_dead_letters_filter_by_reason_type_and_time_and_page(
    pricing: BoundedContext,
) -> None:
    for number in range(55):
        await add_letter(pricing, f"p{number}", failed_ago=timedelta(hours=number % 2 * 48))
    undecodable = await add_undecodable_letter(pricing)
    async with client(pricing) as http:
        everything = await http.get("/dead-letters")
        assert re.search(r'id="total">56<', everything.text)
        assert everything.text.count('name="letter_id"') == 50
        assert "page 1 of 2" in everything.text
        second = await http.get("/dead-letters", params={"page": "2"})
        assert second.text.count('name="letter_id"') == 6
        by_reason = await http.get("/dead-letters", params={"reason": "undecodable"})
        assert re.search(r'id="total">1<', by_reason.text) and undecodable in by_reason.text
        by_type = await http.get("/dead-letters", params={"type": "dashboardtest.price_changed"})
        assert re.search(r'id="total">55<', by_type.text)
        recent = await http.get(
            "/dead-letters", params={"since": (_now() - timedelta(hours=1)).isoformat()}
        )
        assert re.search(r'id="total">29<', recent.text)  # 28 recent + the undecodable one


async def test_a_dead_letter_shows_headers_pretty_payload_and_error(
    pricing: BoundedContext,
) -> None:
    letter_id, event_id = await add_letter(pricing, "p7")
    async with client(pricing) as http:
        page = await http.get(f"/dead-letters/pricing/{letter_id}")
        missing = await http.get("/dead-letters/pricing/no-such-letter")
    assert page.status_code == 200
    assert "ce-correlationid" in page.text and event_id in page.text
    assert "&#34;product_id&#34;: &#34;p7&#34;" in page.text  # indented JSON, escaped
    assert "RuntimeError: price of p7 refused" in page.text
    assert missing.status_code == 404


async def test_without_a_token_the_dashboard_is_read_only(pricing: BoundedContext) -> None:
    letter_id, _ = await add_letter(pricing, "p1")
    async with client(pricing, token=None) as http:
        page = await http.get("/dead-letters")
        assert "read-only" in page.text and "disabled" in page.text
        refused = await http.post(
            "/dead-letters/pricing/purge",
            data={"csrf": csrf_of(page), "letter_id": letter_id, "scope": "selected"},
            headers={"Origin": BASE},
        )
        login = await http.post(
            "/login", data={"token": "", "csrf": csrf_of(page)}, headers={"Origin": BASE}
        )
    assert refused.status_code == 403 and "read-only" in refused.text
    assert login.status_code == 403
    assert await letters_left(pricing) == {letter_id}


async def test_actions_need_the_token_a_csrf_token_and_the_same_origin(
    pricing: BoundedContext,
) -> None:
    letter_id, _ = await add_letter(pricing, "p1")
    async with client(pricing) as http:
        anonymous = csrf_of(await http.get("/dead-letters"))
        form = {"csrf": anonymous, "letter_id": letter_id, "scope": "selected"}
        not_logged_in = await http.post(
            "/dead-letters/pricing/purge", data=form, headers={"Origin": BASE}
        )
        wrong_token = await http.post(
            "/login", data={"token": "guess", "csrf": anonymous}, headers={"Origin": BASE}
        )
        csrf = await logged_in(http)
        form["csrf"] = csrf
        forged_origin = await http.post(
            "/dead-letters/pricing/purge", data=form, headers={"Origin": "http://evil.test"}
        )
        no_origin = await http.post("/dead-letters/pricing/purge", data=form)
        wrong_csrf = await http.post(
            "/dead-letters/pricing/purge",
            data={**form, "csrf": anonymous},
            headers={"Origin": BASE},
        )
        by_get = await http.get("/dead-letters/pricing/purge")
        assert await letters_left(pricing) == {letter_id}
        done = await http.post(
            "/dead-letters/pricing/purge", data=form, headers={"Referer": f"{BASE}/dead-letters"}
        )
    assert not_logged_in.status_code == 403 and "log in" in not_logged_in.text
    assert wrong_token.status_code == 403 and "wrong token" in wrong_token.text
    assert forged_origin.status_code == 403 and "cross-site" in forged_origin.text
    assert no_origin.status_code == 403
    assert wrong_csrf.status_code == 403 and "CSRF" in wrong_csrf.text
    assert by_get.status_code == 404
    assert done.status_code == 303 and "purged+1" in done.headers["location"].replace("%20", "+")
    assert await letters_left(pricing) == set()


async def test_replay_and_purge_one_a_selection_or_every_letter_matching_a_filter(
    pricing: BoundedContext,
) -> None:
    ids = [(await add_letter(pricing, f"p{n}"))[0] for n in range(4)]
    broken = await add_undecodable_letter(pricing)
    async with client(pricing) as http:
        csrf = await logged_in(http)
        origin = {"Origin": BASE}
        one = await http.post(
            "/dead-letters/pricing/replay",
            data={"csrf": csrf, "letter_id": ids[0], "scope": "selected"},
            headers=origin,
        )
        assert one.status_code == 303
        assert await effect_products(pricing) == ["p0"]
        selection = await http.post(
            "/dead-letters/pricing/purge",
            data={"csrf": csrf, "letter_id": [ids[1], ids[2]], "scope": "selected"},
            headers=origin,
        )
        assert selection.status_code == 303
        assert await letters_left(pricing) == {ids[3], broken}
        matching = await http.post(
            "/dead-letters/pricing/replay",
            data={"csrf": csrf, "scope": "matching", "type": "dashboardtest.price_changed"},
            headers=origin,
        )
        assert "replayed+1%2C+still+failing+0" in matching.headers["location"].replace("%20", "+")
        assert await effect_products(pricing) == ["p0", "p3"]
        purged = await http.post(
            "/dead-letters/pricing/purge",
            data={"csrf": csrf, "scope": "matching", "reason": "undecodable"},
            headers=origin,
        )
    assert purged.status_code == 303
    assert await letters_left(pricing) == set()


async def test_lookup_by_correlation_or_event_id_finds_outbox_inbox_and_dead_letters(
    tmp_path: Path,
) -> None:
    broker = f"memory://dashboard-{uuid4().hex}"
    catalog = build_catalog(f"sqlite:///{tmp_path / 'catalog.db'}", broker)
    pricing = build_pricing(f"sqlite:///{tmp_path / 'pricing.db'}", broker)
    RecordPrice.refused = {"bad"}
    try:
        publish_prices(catalog, "good", "bad", correlation_id="order-77")
        report = await deliver(catalog, pricing)
        assert report.dead_lettered == {"pricing": 1}
        async with client(catalog, pricing) as http:
            by_correlation = await http.get("/lookup", params={"id": "order-77"})
            letter = (await DeadLetterStore(pricing.async_engine).list())[0]
            by_event = await http.get("/lookup", params={"id": str(letter.event_id)})
            nothing = await http.get("/lookup", params={"id": "no-such-id"})
    finally:
        RecordPrice.refused = set()
        for context in (catalog, pricing):
            await context.adispose()
            context.dispose()
    text = by_correlation.text
    assert text.count("published ") >= 2  # both archived outbox rows of catalog
    assert 'class="inbox-hits"' in text and 'class="dead-letter-hits"' in text
    assert letter.letter_id in text
    assert 'class="trace-tree"' in text and "use case order-77" in text  # tidings trace
    assert "<svg" in text
    assert letter.letter_id in by_event.text and 'class="outbox-hits"' in by_event.text
    assert 'id="nothing"' in nothing.text


def _now():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    return datetime.now(UTC)


async def test_consumer_lag_is_read_from_a_sqlite_file_broker(tmp_path: Path) -> None:
    from tidings.outbox.relay import Relay

    broker = f"sqlite:///{tmp_path / 'broker.db'}"
    catalog = build_catalog(f"sqlite:///{tmp_path / 'catalog.db'}", broker)
    pricing = build_pricing(f"sqlite:///{tmp_path / 'pricing.db'}", broker)
    try:
        async with client(catalog, pricing) as http:
            before = await http.get("/overview/table")
            publish_prices(catalog, "a", correlation_id="c-1")
            await deliver(catalog, pricing)  # the group joins and commits
            caught_up = await http.get("/overview/table")
            publish_prices(catalog, "b", "c", "d", correlation_id="c-2")
            relay = Relay(catalog, complete_after_commit=False)
            assert await relay.drain() == 3  # sent, not consumed
            behind = await http.get("/overview/table")
    finally:
        for context in (catalog, pricing):
            await context.adispose()
            context.dispose()

    def lag(page: httpx.Response) -> str:
        row = re.search(r'data-context="pricing">(.*?)</tr>', page.text, re.S)
        assert row
        cell = re.search(r'class="num lag">(.*?)</td>', row.group(1), re.S)
        assert cell
        return re.sub(r"<[^>]+>", " ", cell.group(1)).split()[0]

    assert "the broker file does not exist yet" in before.text
    assert lag(caught_up) == "0" and lag(behind) == "3"
    assert "no consumer: the context handles no integration events" in behind.text


async def test_mounted_under_a_prefix_links_forms_and_cookie_follow_it(
    pricing: BoundedContext,
) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    letter_id, _ = await add_letter(pricing, "p1")
    outer = Starlette(routes=[Mount("/ops/tidings", app=create_app([pricing], token=TOKEN))])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=outer), base_url=BASE) as http:
        overview = await http.get("/ops/tidings/")
        assert f'href="{BASE}/ops/tidings/dead-letters"' in overview.text
        assert "Path=/ops/tidings" in overview.headers["set-cookie"]
        form = await http.get("/ops/tidings/login")
        assert f'action="{BASE}/ops/tidings/login"' in form.text
        await http.post(
            "/ops/tidings/login",
            data={"token": TOKEN, "csrf": csrf_of(form)},
            headers={"Origin": BASE},
        )
        csrf = csrf_of(await http.get("/ops/tidings/dead-letters"))
        done = await http.post(
            "/ops/tidings/dead-letters/pricing/purge",
            data={"csrf": csrf, "letter_id": letter_id, "scope": "selected"},
            headers={"Origin": BASE},
        )
    assert done.status_code == 303
    assert done.headers["location"].startswith(f"{BASE}/ops/tidings/dead-letters?")
    assert await letters_left(pricing) == set()
