"""The articles' naming advice, checked: domain events are specific past-tense facts.

``ProductPutOnSale`` says what happened in the domain; ``ProductUpdated`` says only
that something changed, which is what an integration event may say, not a domain
event. These are heuristics, so they warn rather than fail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_GENERIC_VERBS = frozenset({"Updated", "Changed", "Modified", "Saved", "Edited", "Processed"})
_IRREGULAR_PAST = frozenset(
    {
        "Put",
        "Set",
        "Sent",
        "Sold",
        "Bought",
        "Paid",
        "Made",
        "Built",
        "Shut",
        "Cut",
        "Held",
        "Kept",
        "Left",
        "Lost",
        "Found",
        "Given",
        "Taken",
        "Begun",
        "Done",
        "Drawn",
        "Driven",
        "Eaten",
        "Fallen",
        "Forgotten",
        "Frozen",
        "Gone",
        "Grown",
        "Hidden",
        "Known",
        "Laid",
        "Led",
        "Lent",
        "Met",
        "Quit",
        "Read",
        "Rebuilt",
        "Resent",
        "Reset",
        "Ridden",
        "Risen",
        "Run",
        "Seen",
        "Shown",
        "Spent",
        "Split",
        "Spun",
        "Stolen",
        "Struck",
        "Sworn",
        "Thrown",
        "Told",
        "Torn",
        "Undone",
        "Upset",
        "Withdrawn",
        "Won",
        "Written",
        "Bound",
        "Brought",
        "Caught",
        "Chosen",
        "Dealt",
        "Fed",
        "Felt",
        "Fought",
        "Hung",
        "Hit",
        "Overridden",
        "Overwritten",
        "Shipped",
    }
)
_SUFFIXES = ("DomainEvent", "Event")
_WORD = re.compile(r"[A-Z][a-z0-9]*|[a-z0-9]+|[A-Z]+(?![a-z])")


@dataclass(frozen=True, slots=True)
class NamingWarning:
    """One piece of naming advice about an event class."""

    name: str
    rule: str
    advice: str


def words(name: str) -> list[str]:
    """``ProductPutOnSale`` → ``["Product", "Put", "On", "Sale"]``."""
    return _WORD.findall(name)


def _is_past_tense(word: str) -> bool:
    return word in _IRREGULAR_PAST or (word.endswith("ed") and len(word) > 3)


def check_domain_event_name(name: str) -> list[NamingWarning]:
    """Warnings for a domain event class name; empty when it reads as a specific fact."""
    core = name
    for suffix in _SUFFIXES:
        if core.endswith(suffix) and core != suffix:
            core = core[: -len(suffix)]
            break
    parts = words(core)
    found: list[NamingWarning] = []
    if not any(_is_past_tense(word) for word in parts[1:] or parts):
        found.append(
            NamingWarning(
                name,
                "past-tense",
                "name domain events as past-tense facts of the domain, e.g. "
                "ProductPutOnSale or OrderConfirmed",
            )
        )
    elif parts and parts[-1] in _GENERIC_VERBS:
        found.append(
            NamingWarning(
                name,
                "too-generic",
                f"'{parts[-1]}' hides the intent; say what happened in the domain "
                "(ProductPutOnSale, ProductRestocked, ProductDiscontinued). Generic "
                "names suit integration events (ProductUpdatedIntegrationEvent)",
            )
        )
    return found
