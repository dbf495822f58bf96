"""Sync dispatch of one domain event to 1 and to 3 handlers, against direct calls.

Baseline: calling the same handlers' ``handle`` directly. ``ratio_1``/``ratio_3`` are
measured outside a transaction (pure dispatch); the ``_in_transaction`` keys publish
inside an open unit of work, which also tracks causation and cascade depth.

    python benchmarks/dispatch.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _harness import compare, emit
from tidings import BoundedContext, DomainEvent, DomainEventHandler


class ProductPutOnSale(DomainEvent):
    product_id: str


class CountingHandler(DomainEventHandler):
    def __init__(self) -> None:
        self.count = 0

    def handle(self, event: ProductPutOnSale) -> None:
        self.count += 1


def main() -> None:
    iterations, rounds = 200_000, 9
    event = ProductPutOnSale(product_id="p-1")
    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as folder:
        for n in (1, 3):
            handlers = [CountingHandler() for _ in range(n)]
            context = BoundedContext("bench", database_url=f"sqlite:///{Path(folder)}/b{n}.db")
            for handler in handlers:
                context.subscribe(handler)
            publish = context.domain_events.publish
            calls = [h.handle for h in handlers]

            def direct(count: int, calls: list = calls) -> None:  # type: ignore[type-arg]
                if len(calls) == 1:
                    (first,) = calls
                    for _ in range(count):
                        first(event)
                else:
                    a, b, c = calls
                    for _ in range(count):
                        a(event)
                        b(event)
                        c(event)

            def tidings(count: int, publish=publish) -> None:  # type: ignore[no-untyped-def]
                for _ in range(count):
                    publish(event)

            def in_transaction(count: int, publish=publish, context=context) -> None:  # type: ignore[no-untyped-def]
                with context.transaction():
                    for _ in range(count):
                        publish(event)

            best = compare(
                {"direct": direct, "tidings": tidings, "in_transaction": in_transaction},
                iterations=iterations,
                rounds=rounds,
            )
            figures[f"ratio_{n}"] = round(best["tidings"] / best["direct"], 2)
            figures[f"ratio_{n}_in_transaction"] = round(best["in_transaction"] / best["direct"], 2)
            figures[f"direct_{n}_ns"] = round(best["direct"] * 1e9, 1)
            context.dispose()
    print(f"dispatch to 1 handler: {figures['ratio_1']}x a direct call (target <= 4.0)")
    print(f"dispatch to 3 handlers: {figures['ratio_3']}x direct calls (target <= 5.0)")
    emit(figures)


if __name__ == "__main__":
    main()
