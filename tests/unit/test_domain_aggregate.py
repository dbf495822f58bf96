"""AggregateRoot: records domain events and hands them over once."""

from __future__ import annotations

import pickle

from tidings import AggregateRoot, DomainEvent


class BasketCheckedOut(DomainEvent):
    basket_id: str


class BasketEmptied(DomainEvent):
    basket_id: str


class Basket(AggregateRoot):
    # No super().__init__() call: recording must not depend on the base's constructor.
    def __init__(self, basket_id: str) -> None:
        self.basket_id = basket_id

    def check_out(self) -> None:
        self.record(BasketCheckedOut(basket_id=self.basket_id))
        self.record(BasketEmptied(basket_id=self.basket_id))


def test_recorded_events_are_pulled_oldest_first_and_only_once() -> None:
    basket = Basket("b-1")
    assert not basket.has_pending_events()

    basket.check_out()

    assert basket.has_pending_events()
    assert [type(e) for e in basket.pull_events()] == [BasketCheckedOut, BasketEmptied]
    assert basket.pull_events() == []
    assert not basket.has_pending_events()


def test_an_aggregate_built_without_init_can_record_events() -> None:
    basket = Basket.__new__(Basket)
    basket.basket_id = "b-2"

    basket.check_out()

    assert len(basket.pull_events()) == 2


def test_pending_events_are_not_part_of_the_pickled_state() -> None:
    basket = Basket("b-3")
    basket.check_out()

    copy = pickle.loads(pickle.dumps(basket))

    assert copy.basket_id == "b-3"
    assert not copy.has_pending_events()
    assert basket.has_pending_events()
