"""The dashboard in a real headless browser: Debian's chromium driven by Playwright.

``tidings dashboard`` runs as a subprocess on a free 127.0.0.1 port over two contexts:
catalog (a SQLite file) and pricing on PostgreSQL, whose dead letters the real
consumer made (``deliver`` with a refusing handler). The browser logs in, replays and
purges by clicking, and the test checks the database after each click; without the
token, and from a page of another origin, the same actions are refused. Screenshots of
each page go to ``docs/images/dashboard-*.png`` (or ``$TIDINGS_SCREENSHOTS``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
from sqlalchemy import make_url

from tests.services import in_ci
from tests.support.dashboard_app import (
    CATALOG_ENV,
    DATABASE_ENV,
    PRICE_CHANGED,
    RecordPrice,
    add_undecodable_letter,
    build_catalog,
    build_pricing,
    effect_products,
    publish_prices,
    set_relay_lease,
)
from tidings import BoundedContext
from tidings.consumer.dead_letters import DeadLetterStore
from tidings.testing import deliver

pytestmark = pytest.mark.postgres

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "browser-token"
PASSWORD = "pg-secret-pw"
ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("TIDINGS_SCREENSHOTS", ROOT / "docs" / "images"))


def _require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    message = f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/services/chromium.sh)"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
async def shop(postgres_url: str, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """catalog (SQLite) published six price changes; pricing (PostgreSQL) refused three,
    which the consumer dead-lettered; one more letter is undecodable."""
    broker = f"memory://dashboard-{uuid4().hex}"
    catalog_url = f"sqlite:///{tmp_path / 'catalog.db'}"
    catalog = build_catalog(catalog_url, broker)
    pricing = build_pricing(postgres_url, broker)
    RecordPrice.refused = {"bad-1", "bad-2", "bad-3"}
    try:
        publish_prices(catalog, "ok-1", "ok-2", "ok-3", correlation_id="order-1001")
        publish_prices(catalog, "bad-1", "bad-2", "bad-3", correlation_id="order-1002")
        report = await deliver(catalog, pricing)
        assert report.dead_lettered == {"pricing": 3}
        await add_undecodable_letter(pricing)
        publish_prices(catalog, "later-1", "later-2", correlation_id="order-1003")  # pending
        await set_relay_lease(catalog, "relay-host:4242:9f2c1a", timedelta(seconds=-90))
        await set_relay_lease(pricing, "relay-host:4243:77b0de", timedelta(seconds=25))
        yield {"catalog": catalog, "pricing": pricing, "urls": (catalog_url, postgres_url)}
    finally:
        RecordPrice.refused = set()
        for context in (catalog, pricing):
            await context.adispose()
            context.dispose()


@pytest.fixture
def dashboard(shop: dict[str, Any]) -> Iterator[str]:
    """``tidings dashboard`` on a free port; its base URL once it answers."""
    _require_chromium()
    port = _free_port()
    catalog_url, pricing_url = shop["urls"]
    # The test server trusts local connections: a password in the URL is accepted, and
    # must never show.
    pricing_url = make_url(pricing_url).set(password=PASSWORD).render_as_string(False)
    env = {**os.environ, CATALOG_ENV: catalog_url, DATABASE_ENV: pricing_url}
    env["TIDINGS_DASHBOARD_TOKEN"] = TOKEN
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "tidings", "dashboard", "--port", str(port)),
            "tests.support.dashboard_app:catalog_from_environment",
            "tests.support.dashboard_app:from_environment",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"the dashboard did not start: {output}")
            time.sleep(0.1)
    except BaseException:
        process.kill()
        process.wait(10)
        raise
    yield base
    process.terminate()  # SIGTERM: uvicorn shuts down gracefully, exit code 0
    assert process.wait(10) == 0


@pytest.fixture
def evil_site(dashboard: str) -> Iterator[str]:
    """A page on another origin whose form posts a purge to the dashboard by itself."""
    page = (
        f'<form id="f" method="post" action="{dashboard}/dead-letters/pricing/purge">'
        '<input name="scope" value="matching"><input name="csrf" value="guessed"></form>'
        '<script>document.getElementById("f").submit()</script>'
    ).encode()

    class Evil(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Evil)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


async def _letters(context: BoundedContext) -> list[Any]:
    return await DeadLetterStore(context.async_engine).list()


async def test_replay_and_purge_by_clicking_with_refusals_and_screenshots(
    shop: dict[str, Any], dashboard: str, evil_site: str
) -> None:
    from playwright.async_api import async_playwright

    pricing: BoundedContext = shop["pricing"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 760})
            page.on("dialog", lambda dialog: dialog.accept())

            # Overview: pending, the expired lease flagged, dead letters counted.
            await page.goto(dashboard + "/")
            catalog_row = page.locator('tr[data-context="catalog"]')
            assert await catalog_row.locator(".pending").inner_text() == "2"
            assert "STALE" in await catalog_row.locator(".relay").inner_text()
            pricing_row = page.locator('tr[data-context="pricing"]')
            assert "active" in await pricing_row.locator(".relay").inner_text()
            assert await pricing_row.locator(".letters").inner_text() == "4"
            assert "postgres:***@" in await pricing_row.inner_text()
            await page.screenshot(path=SHOTS / "dashboard-overview.png")

            # Not logged in: the buttons are disabled and a POST is refused.
            await page.goto(dashboard + "/dead-letters?context=pricing")
            assert await page.locator("button", has_text="Replay selected").is_disabled()
            csrf = await page.locator('input[name="csrf"]').first.get_attribute("value")
            refused = await page.request.post(
                dashboard + "/dead-letters/pricing/purge",
                form={"csrf": csrf or "", "scope": "matching"},
                headers={"Origin": dashboard},
            )
            assert refused.status == 403
            assert len(await _letters(pricing)) == 4

            # Log in with the token.
            await page.goto(dashboard + "/login")
            await page.fill('input[name="token"]', TOKEN)
            await page.click('button:has-text("Log in")')
            await page.wait_for_url(dashboard + "/")
            assert await page.locator(".who").inner_text() != ""

            # A page of another origin posting a purge is refused, even logged in.
            forged = await browser.new_page()
            await forged.goto(evil_site)
            await forged.wait_for_load_state()
            await forged.wait_for_selector("#refusal")
            assert "cross-site" in await forged.locator("#refusal").inner_text()
            await forged.close()
            assert len(await _letters(pricing)) == 4

            # Replay one letter after "fixing" the handler (the dashboard's own process
            # never refused): its effect is written and the letter is gone.
            await page.goto(f"{dashboard}/dead-letters?context=pricing&type={PRICE_CHANGED}")
            assert await page.locator("#total").inner_text() == "3"
            await page.screenshot(path=SHOTS / "dashboard-dead-letters.png", full_page=True)
            letters = {letter.partition_key: letter for letter in await _letters(pricing)}
            await page.check(f'input[value="{letters["bad-1"].letter_id}"]')
            await page.click('button:has-text("Replay selected")')
            await page.wait_for_selector(".notice")
            assert "replayed 1, still failing 0" in await page.locator(".notice").inner_text()
            assert "bad-1" in await effect_products(pricing)
            assert letters["bad-1"].letter_id not in {x.letter_id for x in await _letters(pricing)}

            # Show one and purge it from its page.
            await page.click(f'tr[data-letter="{letters["bad-2"].letter_id}"] a')
            await page.wait_for_selector("#payload")
            assert '"product_id": "bad-2"' in await page.locator("#payload").inner_text()
            assert "price of bad-2 refused" in await page.locator("#error").inner_text()
            await page.screenshot(path=SHOTS / "dashboard-dead-letter.png", full_page=True)
            await page.click('button:has-text("Purge")')
            await page.wait_for_selector(".notice")
            assert "purged 1" in await page.locator(".notice").inner_text()
            remaining = {x.letter_id for x in await _letters(pricing)}
            assert letters["bad-2"].letter_id not in remaining and len(remaining) == 2

            # Purge every letter matching a filter (the undecodable one).
            await page.goto(dashboard + "/dead-letters?context=pricing&reason=undecodable")
            await page.click('button:has-text("Purge all matching")')
            await page.wait_for_selector(".notice")
            left = await _letters(pricing)
            assert [x.partition_key for x in left] == ["bad-3"]

            # Lookup by correlation id: outbox rows, inbox rows and the dead letter.
            await page.goto(dashboard + "/lookup")
            await page.fill('input[name="id"]', "order-1002")
            await page.click('button:has-text("Look up")')
            await page.wait_for_selector(".dead-letter-hits")
            assert await page.locator(".outbox-hits tr").count() == 4  # header + 3
            assert await page.locator(".inbox-hits tr").count() == 2  # header + bad-1 replayed
            assert "use case order-1002" in await page.locator("#trace").inner_text()
            await page.screenshot(path=SHOTS / "dashboard-lookup.png", full_page=True)

            await page.goto(dashboard + "/map")
            assert await page.locator(".map svg").count() == 1
            await page.screenshot(path=SHOTS / "dashboard-map.png")
            for path in ("/", "/dead-letters?context=pricing", "/lookup?id=order-1002"):
                assert PASSWORD not in await (await page.goto(dashboard + path)).text()
        finally:
            await browser.close()
