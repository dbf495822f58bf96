"""``tidings lint``: the articles' naming rules, checked on an application's events."""

from __future__ import annotations

import typer

from tidings.cli.common import AppArg, console
from tidings.cli.loading import load_context


def lint(target: AppArg) -> None:
    """Warn about domain event names that are not specific past-tense facts.

    Checks every DomainEvent subclass imported by the application. Exits with 1 when
    there are warnings, so it can guard a CI pipeline.
    """
    from tidings.domain.events import DomainEvent
    from tidings.naming import check_domain_event_name

    load_context(target)
    warnings = [
        warning
        for cls in sorted(_all_subclasses(DomainEvent), key=lambda c: c.__qualname__)
        for warning in check_domain_event_name(cls.__name__)
    ]
    for warning in warnings:
        console.print(f"[yellow]{warning.name}[/] ({warning.rule}): {warning.advice}")
    if warnings:
        raise typer.Exit(1)
    console.print("[green]✓[/] domain event names read as specific facts")


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
