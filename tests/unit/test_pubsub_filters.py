"""The Pub/Sub subscription filters tidings writes, read back to tell which types a
topic's subscriptions take (what makes an event unroutable on Pub/Sub)."""

from __future__ import annotations

from tidings.transports.pubsub_routing import (
    MAX_FILTER_BYTES,
    TopicRoutes,
    admitted_by,
    filter_for,
)


def test_a_filter_tidings_writes_reads_back_as_its_types() -> None:
    types = frozenset({"catalog.product.updated", "catalog.product.created"})
    expression = filter_for(types)

    assert expression == (
        'attributes."ce-type" = "catalog.product.created" OR '
        'attributes."ce-type" = "catalog.product.updated"'
    )
    assert admitted_by(expression) == types


def test_too_many_types_for_one_filter_give_none_which_admits_every_type() -> None:
    types = frozenset(f"catalog.some.long.type.name.{i}" for i in range(10))
    assert len(" OR ".join(types)) > MAX_FILTER_BYTES

    assert filter_for(types) == ""
    assert admitted_by("") is None


def test_a_filter_in_another_format_admits_none_of_the_types() -> None:
    for foreign in (
        'hasPrefix(attributes."ce-type", "catalog.")',
        'NOT attributes."ce-type" = "a"',
        'attributes."ce-type" = "a" AND attributes.tenant = "x"',
    ):
        assert admitted_by(foreign) == frozenset()


def test_routes_remember_taken_types_and_ask_again_for_the_others() -> None:
    routes = TopicRoutes()
    assert routes.unknown({"a", "b"}) == {"a", "b"}

    assert routes.learn({"a", "b"}, [filter_for(frozenset({"a"}))]) == {"b"}
    assert routes.unknown({"a", "b"}) == {"b"}  # looked up again: it may be taken now
    assert routes.learn({"b"}, [filter_for(frozenset({"a"})), 'attributes."ce-type" = "b"']) == (
        set()
    )
    assert routes.unknown({"a", "b"}) == set()

    routes.forget()
    assert routes.unknown({"a"}) == {"a"}
    assert routes.learn({"a", "z"}, ["", filter_for(frozenset({"q"}))]) == set()
    assert routes.unknown({"anything"}) == set()  # an unfiltered subscription takes all
