"""``tidings dashboard``: the web UI over one or several contexts."""

from __future__ import annotations

import contextlib
import signal
from types import FrameType
from typing import Annotated, NoReturn

import typer

from tidings.cli.common import console, errors
from tidings.cli.loading import load_contexts

#: the environment variable the token is read from
TOKEN_ENV = "TIDINGS_DASHBOARD_TOKEN"


def dashboard_command(
    targets: Annotated[
        list[str],
        typer.Argument(
            help="Contexts or a System as MODULE:ATTRIBUTE, e.g. examples.ecommerce.system."
        ),
    ],
    host: Annotated[
        str, typer.Option(help="Interface to bind; the default serves this machine only.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            envvar=TOKEN_ENV,
            show_envvar=True,
            help="Token that enables replay and purge (log in with it in the browser). "
            "Without one the dashboard is read-only.",
        ),
    ] = None,
) -> None:
    """Serve a web dashboard: outbox and relay per context, consumer lag, dead letters
    (filter, show, replay, purge) and event lookup by event id or correlation id.

    Runs until Ctrl-C or SIGTERM. Exit codes: 0 after a stop, 2 for a bad target or a missing
    extra (install the dashboard extra of tidings).
    """
    from tidings.errors import MissingExtraError

    try:
        import uvicorn

        from tidings.dashboard import create_app
    except ModuleNotFoundError as exc:
        raise MissingExtraError("tidings dashboard", "dashboard") from exc
    contexts = load_contexts(targets)
    token = token or None  # an empty variable is no token
    app = create_app(contexts, token=token)
    if token is None and host not in ("127.0.0.1", "localhost", "::1"):
        errors.print(f"[yellow]warning:[/] serving {host} read-only without a token")
    mode = "read-only" if token is None else "actions need the token"
    names = ", ".join(c.name for c in contexts)
    console.print(f"dashboard of {names} on http://{host}:{port}/ ({mode})")
    # uvicorn stops gracefully on SIGINT and SIGTERM, then raises the signal again for
    # whoever handles it next: here, a requested stop is a clean exit.
    signal.signal(signal.SIGTERM, _stopped)
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.run(app, host=host, port=port, log_level="warning")


def _stopped(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(0)
