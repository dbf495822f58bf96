"""Rendering a page with the session it belongs to, and refusing an action."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, quote

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tidings.dashboard.security import COOKIE, Session
from tidings.dashboard.state import state_of

_FORM_LIMIT = 1024 * 1024


def session_of(request: Request) -> Session:
    """The request's session, a new anonymous one when it has none (yet)."""
    cached: Session | None = request.scope.get("tidings.session")
    if cached is None:
        guard = state_of(request).guard
        cached = guard.read_cookie(request.cookies.get(COOKIE)) or guard.new_session()
        request.scope["tidings.session"] = cached
    return cached


def remember(request: Request, response: Response, session: Session) -> Response:
    """Set the session cookie on ``response`` (signed, HttpOnly, SameSite=Strict)."""
    response.set_cookie(
        COOKIE,
        state_of(request).guard.cookie_value(session),
        httponly=True,
        samesite="strict",
        path=request.scope.get("root_path") or "/",
    )
    return response


def page(request: Request, template: str, status_code: int = 200, **values: Any) -> Response:
    """``template`` rendered with what every page shows (nav, session, CSRF token)."""
    state = state_of(request)
    session = session_of(request)
    values.update(
        contexts=list(state.contexts),
        session=session,
        read_only=state.guard.read_only,
        csrf=state.guard.csrf_token(session),
        notice=request.query_params.get("notice"),
        status_code=status_code,
    )
    response = state.templates.TemplateResponse(request, template, values, status_code=status_code)
    return remember(request, response, session)


def refused(request: Request, reason: str) -> Response:
    """The 403 page saying why an action was refused."""
    return page(request, "refused.html", status_code=403, reason=reason)


def not_found(request: Request, what: str) -> Response:
    return page(request, "refused.html", status_code=404, reason=what)


def back_to(url: str, notice: str) -> Response:
    """Post/redirect/get: back to ``url`` with a notice of what was done."""
    separator = "&" if "?" in url else "?"
    return RedirectResponse(f"{url}{separator}notice={quote(notice)}", status_code=303)


async def read_form(request: Request) -> FormData:
    """The POSTed form: URL-encoded, as the dashboard's forms send it (no upload, so no
    multipart parser to install); anything past 1 MB is ignored."""
    text = (await request.body())[:_FORM_LIMIT].decode("utf-8", "replace")
    fields: list[tuple[str, str | UploadFile]] = list(parse_qsl(text, keep_blank_values=True))
    return FormData(fields)


def form_text(value: object) -> str | None:
    """A form field's text (None for a missing field or an upload)."""
    return value if isinstance(value, str) else None
