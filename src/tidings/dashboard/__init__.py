"""``tidings dashboard``: a web UI over one or several contexts.

Overview (outbox, relays, consumer lag, dead letters), dead letters filtered,
shown, replayed and purged, and event lookup by event id or correlation id.
Server-rendered (Starlette and Jinja2, ``pip install 'tidings[dashboard]'``)::

    from tidings.dashboard import create_app

    app = create_app(system.contexts, token="s3cret")   # serve it, or mount it

Read-only without a token; every action needs a session logged in with the token,
a CSRF token and a same-origin request (see :mod:`tidings.dashboard.security`).
"""

from tidings.dashboard.app import create_app

__all__ = ["create_app"]
