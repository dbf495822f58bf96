"""Dead letters: the filtered list, one letter in full, replay and purge."""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from tidings.consumer.dead_letters import DeadLetterStore
from tidings.dashboard.queries import dead_letters as queries
from tidings.dashboard.queries.dead_letters import REASONS, REPLAY_LIMIT, LetterFilter
from tidings.dashboard.state import state_of
from tidings.dashboard.views.rendering import (
    back_to,
    form_text,
    not_found,
    page,
    read_form,
    refused,
    session_of,
)
from tidings.errors import ActionRefusedError
from tidings.redaction import redact


async def letter_list(request: Request) -> Response:
    """The letters of one context matching the filter, newest first, a page at a time."""
    state = state_of(request)
    chosen = LetterFilter.from_params(request.query_params, next(iter(state.contexts)))
    context = state.context(chosen.context)
    if context is None:
        return not_found(request, f"no context named {chosen.context!r} in this dashboard")
    try:
        number = int(request.query_params.get("page", "1"))
    except ValueError:
        number = 1
    letters = await queries.letter_page(context, chosen, number)
    return page(
        request,
        "dead_letters.html",
        chosen=chosen,
        letters=letters,
        reasons=REASONS,
        replay_limit=REPLAY_LIMIT,
    )


async def letter_detail(request: Request) -> Response:
    """One letter: headers, the payload pretty-printed, the error."""
    context = state_of(request).context(request.path_params["context"])
    letter_id = request.path_params["letter_id"]
    letter = None
    if context is not None:
        letter = await DeadLetterStore(context.async_engine).get(letter_id)
    if context is None or letter is None or letter.consumer != context.consumer_group:
        return not_found(request, f"no dead letter {letter_id}")
    return page(
        request,
        "dead_letter.html",
        context_name=context.name,
        letter=letter,
        payload=_pretty(letter.body),
        headers={name: redact(value) for name, value in sorted(letter.headers.items())},
        error=redact(letter.error_message or ""),
    )


async def replay(request: Request) -> Response:
    """Replay the checked letters, or every letter the filter matches."""
    return await _act(request, "replay")


async def purge(request: Request) -> Response:
    """Purge the checked letters, or every letter the filter matches."""
    return await _act(request, "purge")


async def _act(request: Request, action: str) -> Response:
    state = state_of(request)
    form = await read_form(request)
    try:
        state.guard.check_action(request, session_of(request), form_text(form.get("csrf")))
    except ActionRefusedError as error:
        return refused(request, str(error))
    context = state.context(request.path_params["context"])
    if context is None:
        return not_found(request, "no such context in this dashboard")
    chosen = LetterFilter.from_params(_single_values(form), context.name)
    letter_ids = [value for value in form.getlist("letter_id") if isinstance(value, str)]
    matching = form.get("scope") == "matching"
    if not matching and not letter_ids:
        return refused(request, "choose the letters first (or act on all matching the filter)")
    back = str(request.url_for("dead_letters")) + "?" + chosen.query_string()
    if action == "purge":
        if matching:
            count = await queries.purge_matching(context, chosen)
        else:
            count = await queries.purge(context, letter_ids)
        return back_to(back, f"purged {count} dead letter(s) of {context.name}")
    if matching:
        letter_ids = await queries.matching_ids(context, chosen, REPLAY_LIMIT)
    succeeded, failed = await queries.replay(context, letter_ids)
    return back_to(back, f"replayed {succeeded}, still failing {failed} ({context.name})")


def _single_values(form: FormData) -> dict[str, str]:
    return {key: value for key, value in form.items() if isinstance(value, str)}


def _pretty(body: bytes) -> str:
    """The message as indented JSON when it is JSON, else as text."""
    text = body.decode("utf-8", errors="replace")
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        return redact(text)
    return redact(json.dumps(parsed, indent=2, ensure_ascii=False, sort_keys=True))
