"""The query bus: ``ask`` returns the answer of the one handler of the query's class."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from tidings import BoundedContext, ConfigurationError, NoQueryHandlerError, Query, QueryHandler


class GetPriceQuery(Query[Decimal]):
    product_id: str


class GetStockQuery(Query[int]):
    product_id: str


class GetPriceQueryHandler(QueryHandler):
    def handle(self, query: GetPriceQuery) -> Decimal:
        return Decimal("9.99") if query.product_id == "p-1" else Decimal("0")


class GetStockQueryHandler(QueryHandler):
    async def handle(self, query: GetStockQuery) -> int:
        return 7


@pytest.fixture
def context() -> BoundedContext:
    return BoundedContext("catalog", database_url="sqlite://")


def test_ask_returns_the_answer_of_the_registered_handler(context: BoundedContext) -> None:
    context.register_query_handler(GetPriceQueryHandler())

    assert context.query_bus.ask(GetPriceQuery(product_id="p-1")) == Decimal("9.99")


def test_asking_a_query_nobody_answers_says_how_to_register_a_handler(
    context: BoundedContext,
) -> None:
    with pytest.raises(NoQueryHandlerError, match=r"ctx\.register_query_handler"):
        context.query_bus.ask(GetPriceQuery(product_id="p-1"))


async def test_asking_the_async_bus_a_query_nobody_answers_fails_the_same_way(
    context: BoundedContext,
) -> None:
    with pytest.raises(NoQueryHandlerError, match="GetPriceQuery"):
        await context.async_query_bus.ask(GetPriceQuery(product_id="p-1"))


def test_a_query_has_exactly_one_handler(context: BoundedContext) -> None:
    context.register_query_handler(GetPriceQueryHandler())

    with pytest.raises(ConfigurationError, match="already has a handler"):
        context.register_query_handler(GetPriceQueryHandler())


def test_a_query_handler_must_be_annotated_with_a_query(context: BoundedContext) -> None:
    class AnswersStrings(QueryHandler):
        def handle(self, query: str) -> str:
            return query

    with pytest.raises(ConfigurationError, match="not a Query subclass"):
        context.register_query_handler(AnswersStrings())


def test_an_async_handler_is_asked_through_the_async_bus(context: BoundedContext) -> None:
    context.register_query_handler(GetStockQueryHandler())

    with pytest.raises(ConfigurationError, match=r"ctx\.async_query_bus"):
        context.query_bus.ask(GetStockQuery(product_id="p-1"))


async def test_the_async_bus_answers_with_async_and_plain_handlers(
    context: BoundedContext,
) -> None:
    context.register_query_handler(GetPriceQueryHandler())
    context.register_query_handler(GetStockQueryHandler())

    assert await context.async_query_bus.ask(GetStockQuery(product_id="p-1")) == 7
    assert await context.async_query_bus.ask(GetPriceQuery(product_id="p-1")) == Decimal("9.99")


def test_queries_are_immutable_values() -> None:
    query = GetPriceQuery(product_id="p-1")

    assert query == GetPriceQuery(product_id="p-1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        query.product_id = "p-2"  # type: ignore[misc]
