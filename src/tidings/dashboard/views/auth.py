"""Logging in with the dashboard's token, and out."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tidings.dashboard.state import state_of
from tidings.dashboard.views.rendering import (
    form_text,
    page,
    read_form,
    refused,
    remember,
    session_of,
)
from tidings.errors import ActionRefusedError


async def login_form(request: Request) -> Response:
    return page(request, "login.html")


async def login(request: Request) -> Response:
    """Check the token; a fresh session id on success (no session fixation)."""
    guard = state_of(request).guard
    form = await read_form(request)
    session = session_of(request)
    try:
        if guard.read_only:
            raise ActionRefusedError(
                "this dashboard is read-only: start it with --token or TIDINGS_DASHBOARD_TOKEN"
            )
        guard.check_form(request, session, form_text(form.get("csrf")))
        if not guard.check_token(form_text(form.get("token")) or ""):
            raise ActionRefusedError("wrong token")
    except ActionRefusedError as error:
        return refused(request, str(error))
    response = RedirectResponse(str(request.url_for("overview")), status_code=303)
    return remember(request, response, guard.new_session(authenticated=True))


async def logout(request: Request) -> Response:
    guard = state_of(request).guard
    form = await read_form(request)
    try:
        guard.check_form(request, session_of(request), form_text(form.get("csrf")))
    except ActionRefusedError as error:
        return refused(request, str(error))
    response = RedirectResponse(str(request.url_for("overview")), status_code=303)
    return remember(request, response, guard.new_session())
