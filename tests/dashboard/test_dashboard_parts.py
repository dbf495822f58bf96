"""The dashboard's small parts: redaction and the trace plug."""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence

import pytest

from tidings import BoundedContext
from tidings.dashboard.trace import trace_html
from tidings.redaction import redact


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://app:s3cret@db:5432/shop", "postgresql://app:***@db:5432/shop"),
        ("amqp://guest:guest@127.0.0.1:5672/", "amqp://guest:***@127.0.0.1:5672/"),
        ("redis://:pw@cache:6379/0", "redis://:***@cache:6379/0"),
        ("sqlite:///shop.db", "sqlite:///shop.db"),
        ("host=db password=hunter2 user=app", "host=db password=*** user=app"),
        (
            "connection to postgresql+asyncpg://u:p4ss@h/db failed",
            "connection to postgresql+asyncpg://u:***@h/db failed",
        ),
    ],
)
def test_redact_hides_passwords_in_urls_and_dsns(text: str, shown: str) -> None:
    assert redact(text) == shown


async def test_the_trace_shows_only_when_tidings_causality_provides_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    contexts = [BoundedContext("catalog")]
    monkeypatch.setitem(sys.modules, "tidings.causality", None)  # as if not installed
    assert await trace_html(contexts, "order-1") is None

    async def render(given: Sequence[BoundedContext], identifier: str) -> str:
        return f"<ol><li>{identifier} in {len(given)} contexts</li></ol>"

    causality = types.ModuleType("tidings.causality")
    causality.trace_html = render  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tidings.causality", causality)
    assert await trace_html(contexts, "order-1") == "<ol><li>order-1 in 1 contexts</li></ol>"
