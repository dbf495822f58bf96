"""What every view of one dashboard app shares: its contexts, guard and templates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.templating import Jinja2Templates

from tidings.context import BoundedContext
from tidings.dashboard.security import Guard
from tidings.errors import ConfigurationError
from tidings.redaction import redact

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(slots=True)
class DashboardState:
    """The app's state, at ``app.state.dashboard``."""

    contexts: dict[str, BoundedContext]
    guard: Guard
    templates: Jinja2Templates
    map_svg: str | None = None

    @classmethod
    def build(cls, contexts: Sequence[BoundedContext], token: str | None) -> DashboardState:
        by_name: dict[str, BoundedContext] = {}
        for context in contexts:
            if context.name in by_name and by_name[context.name] is not context:
                raise ConfigurationError(
                    f"two contexts are named {context.name!r}; give each a unique name"
                )
            by_name[context.name] = context
        if not by_name:
            raise ConfigurationError("the dashboard needs at least one context")
        templates = Jinja2Templates(directory=str(TEMPLATES))
        templates.env.filters["redact"] = redact
        return cls(by_name, Guard(token), templates)

    def context(self, name: str) -> BoundedContext | None:
        return self.contexts.get(name)


def state_of(request: Request) -> DashboardState:
    state: DashboardState = request.app.state.dashboard
    return state
