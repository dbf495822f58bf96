"""``tidings lint``: the articles' naming rules over one or more contexts."""

from __future__ import annotations

import json

import typer

from tidings.cli.common import JsonOpt, TargetsArg, console


def lint(targets: TargetsArg, as_json: JsonOpt = False) -> None:
    """Warn about event names that break the articles' rules.

    Domain events must be specific past-tense facts (ProductPutOnSale,
    ProductPriceChanged; not ProductUpdated); integration events a context
    publishes must be generic state, not a domain verb phrase
    (ProductUpdatedIntegrationEvent; not ProductPutOnSaleIntegrationEvent).
    Publishing from a use case is detected at run time instead (see
    BoundedContext(strict_publishing=...)).

    Exit codes: 0 no warnings; 1 warnings (so it can guard CI); 2 the targets
    cannot be loaded.
    """
    from tidings.cli.loading import load_contexts
    from tidings.lint import lint_contexts

    contexts = load_contexts(targets)
    warnings = lint_contexts(contexts)
    if as_json:
        print(
            json.dumps(
                {
                    "contexts": [context.name for context in contexts],
                    "warnings": [warning.to_json() for warning in warnings],
                }
            )
        )
    else:
        for warning in warnings:
            where = f" in {warning.context}" if warning.context else ""
            console.print(
                f"[yellow]{warning.name}[/] ({warning.kind}{where}, {warning.rule}): "
                f"{warning.advice}",
                soft_wrap=True,
            )
        if not warnings:
            console.print("[green]✓[/] event names follow the articles' rules")
    if warnings:
        raise typer.Exit(1)
