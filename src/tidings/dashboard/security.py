"""Who may change things: the token, a session cookie, and cross-site request checks.

Reading needs nothing (the dashboard binds to 127.0.0.1 by default). Every action
(replay, purge) is a POST that must pass three checks:

* the session is logged in with the dashboard's token (``/login``); without a token
  configured the dashboard is read-only and refuses every action;
* the form carries the session's CSRF token, which a page of another site cannot read;
* the request's ``Origin`` (or, failing that, its ``Referer``) is the dashboard's own.

The session cookie is signed with a key made when the app starts, ``HttpOnly`` and
``SameSite=Strict``: restarting the dashboard logs everyone out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request

from tidings.errors import ActionRefusedError

COOKIE = "tidings_dashboard"


@dataclass(frozen=True, slots=True)
class Session:
    """One browser's session: an id, and whether it logged in with the token."""

    session_id: str
    authenticated: bool


class Guard:
    """Issues sessions and checks actions against the token."""

    def __init__(self, token: str | None) -> None:
        self.token = token or None
        self._key = secrets.token_bytes(32)

    @property
    def read_only(self) -> bool:
        """True when no token is configured: every action is refused."""
        return self.token is None

    def new_session(self, *, authenticated: bool = False) -> Session:
        return Session(secrets.token_urlsafe(18), authenticated)

    def cookie_value(self, session: Session) -> str:
        payload = f"{session.session_id}.{int(session.authenticated)}"
        return f"{payload}.{self._sign('session', payload)}"

    def read_cookie(self, value: str | None) -> Session | None:
        """The session a cookie names, or None when absent or not signed by this app."""
        if not value or value.count(".") != 2:
            return None
        session_id, flag, signature = value.split(".")
        if not hmac.compare_digest(signature, self._sign("session", f"{session_id}.{flag}")):
            return None
        return Session(session_id, flag == "1" and not self.read_only)

    def csrf_token(self, session: Session) -> str:
        """The token the session's forms carry back."""
        return self._sign("csrf", session.session_id)

    def check_token(self, candidate: str) -> bool:
        return self.token is not None and hmac.compare_digest(
            candidate.encode(), self.token.encode()
        )

    def check_form(self, request: Request, session: Session, csrf: str | None) -> None:
        """Raise :class:`~tidings.errors.ActionRefusedError` unless the POST is
        same-origin and carries the session's CSRF token."""
        if request.method != "POST":
            raise ActionRefusedError("actions are POST requests only")
        if not _same_origin(request):
            raise ActionRefusedError(
                "cross-site request refused: the Origin (or Referer) is not this dashboard"
            )
        if not csrf or not hmac.compare_digest(csrf, self.csrf_token(session)):
            raise ActionRefusedError("the form's CSRF token is missing or stale: reload the page")

    def check_action(self, request: Request, session: Session, csrf: str | None) -> None:
        """Raise :class:`~tidings.errors.ActionRefusedError` unless ``session`` may act now."""
        if self.read_only:
            raise ActionRefusedError(
                "this dashboard is read-only: start it with --token or "
                "TIDINGS_DASHBOARD_TOKEN to replay and purge"
            )
        self.check_form(request, session, csrf)
        if not session.authenticated:
            raise ActionRefusedError("log in with the dashboard's token first")

    def _sign(self, purpose: str, value: str) -> str:
        digest = hmac.new(self._key, f"{purpose}:{value}".encode(), hashlib.sha256)
        return digest.hexdigest()[:32]


def _same_origin(request: Request) -> bool:
    own = f"{request.url.scheme}://{request.url.netloc}"
    origin = request.headers.get("origin")
    if origin is not None:
        return origin == own
    # Browsers send Origin on every cross-origin POST; without it, the Referer must match.
    referer = request.headers.get("referer")
    if referer is None:
        return False
    parts = urlsplit(referer)
    return f"{parts.scheme}://{parts.netloc}" == own
