"""The articles' naming advice, checked: specific domain events, generic integration events.

Domain events (:func:`check_domain_event_name`)
    ``past-tense``: the name must carry a past-tense verb after its subject
    (``ProductPutOnSale``, ``OrderConfirmed``). ``too-generic``: a generic verb
    (Updated, Changed, Modified, Saved, Edited, Processed) hides the intent when
    nothing says *what* changed: ``ProductUpdated``, ``ProductChanged`` or
    ``ProductDetailsUpdated`` (only vague nouns such as Details, Data, Info, State
    or Status between subject and verb). A generic verb after a named attribute is
    a specific fact: ``ProductPriceChanged`` says the price changed and nothing
    else, which a handler can react to precisely, as the articles want; renaming it
    ``ProductRepriced`` would say the same thing less plainly.

Integration events (:func:`check_integration_event_name`)
    ``too-specific``: the articles' "integration events too specific" mistake
    (``ProductPutOnSaleIntegrationEvent``). The name carries a domain verb *phrase*:
    words follow its last past-tense verb (Put *On Sale*, Shipped *To Customer*),
    which is how a use case's intent reads, not observable state. A single state
    word is a shared concept and passes (``OrderConfirmedIntegrationEvent``: "when
    the domain concept is shared and accepted by all bounded contexts, the
    integration event can directly reflect what happened in the domain"), as does
    a generic one (``ProductUpdatedIntegrationEvent``). When a domain event of the
    same context has the phrase, the advice names it.

These are heuristics, so they warn rather than fail at definition time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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
_VAGUE_NOUNS = frozenset(
    {
        "Data",
        "Details",
        "Info",
        "Information",
        "Properties",
        "Attributes",
        "Fields",
        "Values",
        "State",
        "Status",
        "Record",
        "Entity",
    }
)
_SUFFIXES = ("DomainEvent", "Event")
_INTEGRATION_SUFFIX = "IntegrationEvent"
_WORD = re.compile(r"[A-Z][a-z0-9]*|[a-z0-9]+|[A-Z]+(?![a-z])")


@dataclass(frozen=True, slots=True)
class NamingWarning:
    """One piece of naming advice about an event class."""

    name: str
    rule: str
    advice: str
    #: ``"domain event"`` or ``"integration event"``.
    kind: str = "domain event"
    #: The context the class belongs to, when the check knows it.
    context: str | None = None

    def to_json(self) -> dict[str, str | None]:
        """The warning as a JSON object (``tidings lint --json``)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "rule": self.rule,
            "advice": self.advice,
            "context": self.context,
        }


def words(name: str) -> list[str]:
    """``ProductPutOnSale`` → ``["Product", "Put", "On", "Sale"]``."""
    return _WORD.findall(name)


def _is_past_tense(word: str) -> bool:
    return word in _IRREGULAR_PAST or (word.endswith("ed") and len(word) > 3)


def _core(name: str, suffixes: tuple[str, ...]) -> str:
    for suffix in suffixes:
        if name.endswith(suffix) and name != suffix:
            return name[: -len(suffix)]
    return name


def check_domain_event_name(name: str) -> list[NamingWarning]:
    """Warnings for a domain event class name; empty when it reads as a specific fact."""
    parts = words(_core(name, _SUFFIXES))
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
    elif parts and parts[-1] in _GENERIC_VERBS and all(w in _VAGUE_NOUNS for w in parts[1:-1]):
        found.append(
            NamingWarning(
                name,
                "too-generic",
                f"'{parts[-1]}' hides the intent; say what happened in the domain "
                "(ProductPutOnSale, ProductRestocked, ProductDiscontinued) or which "
                "attribute changed (ProductPriceChanged). Generic names suit "
                "integration events (ProductUpdatedIntegrationEvent)",
            )
        )
    return found


def verb_phrase(name: str) -> list[str]:
    """The words from the last past-tense verb on, when more words follow it.

    ``ProductPutOnSale`` → ``["Put", "On", "Sale"]``; ``OrderConfirmed`` and
    ``ProductPriceChanged`` → ``[]`` (the verb ends the name).
    """
    parts = words(_core(_core(name, (_INTEGRATION_SUFFIX,)), _SUFFIXES))
    verbs = [index for index, word in enumerate(parts) if index > 0 and _is_past_tense(word)]
    if not verbs or verbs[-1] == len(parts) - 1:
        return []
    return parts[verbs[-1] :]


def check_integration_event_name(
    name: str, domain_events: Sequence[str] = (), *, context: str | None = None
) -> list[NamingWarning]:
    """Warnings for an integration event class name; empty when it reads as generic state.

    ``domain_events`` are the names of the same context's domain events: one whose verb
    phrase the contract repeats is named in the advice.
    """
    phrase = verb_phrase(name)
    if not phrase:
        return []
    joined = "".join(phrase)
    source = next((event for event in domain_events if "".join(verb_phrase(event)) == joined), None)
    origin = f" of the domain event {source}" if source else ""
    return [
        NamingWarning(
            name,
            "too-specific",
            f"'{joined}' is the specific verb{origin}: an integration event that "
            "repeats a use case's intent serves one consumer and couples the contexts. "
            "Publish observable state with a generic verb (ProductUpdatedIntegrationEvent) "
            "from the domain event's handler",
            kind="integration event",
            context=context,
        )
    ]
