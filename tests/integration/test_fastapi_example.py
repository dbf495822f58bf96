"""The FastAPI example: requests served while relay and consumer run in the app's loop,
and nothing lost across a shutdown with events in flight and a restart."""

from __future__ import annotations

import asyncio
import importlib
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("TIDINGS_API_DIR", str(tmp_path))
    sys.modules.pop("examples.catalog_api.app", None)
    module = importlib.import_module("examples.catalog_api.app")
    yield module
    sys.modules.pop("examples.catalog_api.app", None)


async def _found(client: httpx.AsyncClient, count: int, timeout: float = 30.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = (await client.get("/search", params={"q": "lamp"})).json()
        if len(found) >= count or time.monotonic() > deadline:
            return list(found)
        await asyncio.sleep(0.05)


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


async def test_a_listed_product_is_found_through_the_search_context(example: ModuleType) -> None:
    app = example.app
    async with app.router.lifespan_context(app), _client(app) as client:
        answer = await client.post("/products", json={"product_id": "p-1", "name": "desk lamp"})
        assert answer.status_code == 201
        again = await client.post("/products", json={"product_id": "p-1", "name": "desk lamp"})
        assert again.status_code == 409
        assert await _found(client, 1) == [{"product_id": "p-1", "name": "desk lamp"}]


async def test_a_failing_request_rolls_back_its_integration_event(example: ModuleType) -> None:
    app = example.app
    async with app.router.lifespan_context(app), _client(app) as client:
        broken = await client.post("/products", json={"product_id": "p-2"})
        assert broken.status_code == 422
    with example.catalog.engine.connect() as connection:
        from sqlalchemy import text

        assert connection.execute(text("SELECT count(*) FROM tidings_outbox")).scalar() == 0
    example.catalog.dispose()


async def test_nothing_is_lost_across_shutdown_with_events_in_flight(example: ModuleType) -> None:
    app = example.app
    count = 120
    async with app.router.lifespan_context(app), _client(app) as client:
        for number in range(count):
            answer = await client.post(
                "/products", json={"product_id": f"p-{number}", "name": f"lamp {number}"}
            )
            assert answer.status_code == 201
        # Shut down at once: some events are in the outbox, some in flight.
    async with app.router.lifespan_context(app), _client(app) as client:
        found = await _found(client, count)
    assert sorted(row["product_id"] for row in found) == sorted(f"p-{n}" for n in range(count))
