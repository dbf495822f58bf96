"""The dashboard's ASGI app: routes to the views, state for them."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.routing import Route

from tidings.context import BoundedContext
from tidings.dashboard.state import DashboardState
from tidings.dashboard.views import auth, dead_letters, event_map, lookup, overview


def create_app(contexts: Sequence[BoundedContext], token: str | None = None) -> Starlette:
    """The dashboard of ``contexts`` as a Starlette app, to serve or mount.

    ``token`` enables actions (replay, purge) for sessions that log in with it; without
    one the dashboard is read-only. Mount it in your own ASGI app under any prefix::

        app.mount("/tidings", create_app(system.contexts, token=os.environ["TOKEN"]))

    It reads the contexts' databases through their own engines and never closes them:
    the contexts belong to the caller.
    """
    routes = [
        Route("/", overview.overview, name="overview"),
        Route("/overview/table", overview.overview_table, name="overview_table"),
        Route("/dead-letters", dead_letters.letter_list, name="dead_letters"),
        Route(
            "/dead-letters/{context}/replay",
            dead_letters.replay,
            methods=["POST"],
            name="replay",
        ),
        Route("/dead-letters/{context}/purge", dead_letters.purge, methods=["POST"], name="purge"),
        Route(
            "/dead-letters/{context}/{letter_id}",
            dead_letters.letter_detail,
            name="dead_letter",
        ),
        Route("/lookup", lookup.lookup, name="lookup"),
        Route("/map", event_map.event_map, name="map"),
        Route("/login", auth.login_form, name="login_form"),
        Route("/login", auth.login, methods=["POST"], name="login"),
        Route("/logout", auth.logout, methods=["POST"], name="logout"),
    ]
    app = Starlette(routes=routes)
    app.state.dashboard = DashboardState.build(contexts, token)
    return app
