"""The articles' rules checked over a set of contexts (``tidings lint``).

Two kinds of checks:

- **names**, here: every :class:`~tidings.DomainEvent` subclass imported by the
  application must read as a specific past-tense fact, and every integration event a
  context publishes (its handlers' ``publishes``) as generic observable state, not a
  domain verb phrase (see :mod:`tidings.naming` for the rules and why);
- **publishing from a use case**, at run time: an integration event published while
  no handler runs is a :class:`~tidings.errors.PublishedFromUseCaseWarning` (an error
  under ``BoundedContext(strict_publishing=True)``); code cannot see it statically.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tidings.application.event_flow import published_contracts
from tidings.domain.events import DomainEvent
from tidings.naming import NamingWarning, check_domain_event_name, check_integration_event_name

if TYPE_CHECKING:
    from tidings.context import BoundedContext


def lint_contexts(contexts: Sequence[BoundedContext]) -> list[NamingWarning]:
    """Every naming warning about the domain and integration events of ``contexts``.

    Domain events are all the DomainEvent subclasses imported so far (loading the
    contexts imports theirs), each attributed to the context whose handlers handle it.
    """
    owners: dict[type, str] = {}
    for context in contexts:
        for subscription in context.subscriptions:
            for event_type in subscription.event_types:
                owners.setdefault(event_type, context.name)
    found: list[NamingWarning] = []
    for cls in sorted(_all_subclasses(DomainEvent), key=lambda c: c.__qualname__):
        for warning in check_domain_event_name(cls.__name__):
            found.append(_in_context(warning, owners.get(cls)))
    seen: set[type] = set()
    for context in contexts:
        domain_events = sorted(c.__name__ for c, owner in owners.items() if owner == context.name)
        for contract in published_contracts(context):
            if contract not in seen:
                seen.add(contract)
                found.extend(
                    check_integration_event_name(
                        contract.__name__, domain_events, context=context.name
                    )
                )
    return found


def _in_context(warning: NamingWarning, context: str | None) -> NamingWarning:
    return NamingWarning(warning.name, warning.rule, warning.advice, warning.kind, context)


def _all_subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    pending: list[type] = [cls]
    while pending:
        subclasses: list[type] = pending.pop().__subclasses__()
        for sub in subclasses:
            if sub not in found:
                found.add(sub)
                pending.append(sub)
    return found
