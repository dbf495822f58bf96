"""The roles the articles name: use cases, handlers and queries.

The bases declare no ``execute``/``handle`` signature on purpose: each subclass narrows
the argument type (``handle(self, event: ProductPutOnSale)``), which a declared base
signature would make a type error. Subscription checks the method instead.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar, dataclass_transform

from tidings.domain.records import FrozenRecord

R = TypeVar("R", covariant=True)


class UseCase:
    """An application service: one user intention, run by ``execute(...)``.

    Dependencies arrive through the constructor (repositories, producers, buses); the
    caller opens the transaction (``with ctx.transaction(): use_case.execute(...)``).
    ``execute`` may be ``async def`` in asyncio applications.
    """


class DomainEventHandler:
    """Reacts to a domain event inside the context: ``handle(self, event: SomeEvent)``.

    The handled class is read from the annotation once, when the handler is subscribed
    (``ctx.subscribe(handler)``); ``A | B`` handles both. ``handle`` may be ``async def``.

    A handler that publishes integration events names them in ``publishes``, so maps,
    contract lists and AsyncAPI documents know which context produces which contract.
    """

    #: The IntegrationEvent classes this handler publishes (see ``tidings map``).
    publishes: ClassVar[tuple[type[Any], ...]] = ()


class IntegrationEventHandler:
    """Reacts to another context's integration event: ``handle(self, event: SomeIntegrationEvent)``.

    Runs in the consuming context's own transaction, guarded by its inbox.

    For throughput a handler may also define ``handle_batch(self, events)``: the
    consumer then passes it each run of consecutive events of the handled type from
    one micro-batch, in order, in one transaction, so it can write them with one
    statement. It must have the effect of calling ``handle`` for each event in turn;
    ``handle`` remains the path for retries, dead-letter replays and events published
    from a handler (``handle_batch`` publishes without a single causing event).

    A handler that publishes integration events in turn names them in ``publishes``.
    """

    #: The IntegrationEvent classes this handler publishes (see ``tidings map``).
    publishes: ClassVar[tuple[type[Any], ...]] = ()


@dataclass_transform(frozen_default=True)
class Query(FrozenRecord, Generic[R]):
    """A question asked through the query bus; ``R`` is the answer's type.

    Subclasses are frozen dataclasses automatically::

        class GetProductQuery(Query[Product]):
            product_id: str
    """


class QueryHandler:
    """Answers one query class: ``handle(self, query: GetProductQuery) -> Product``."""
