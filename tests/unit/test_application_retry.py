"""RetryPolicy: exponential backoff with jitter, capped, optionally bounded."""

from __future__ import annotations

from typing import Any

import pytest

from tidings import RetryPolicy


def test_without_jitter_the_delay_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_delay=0.5, max_delay=3.0, jitter=0.0)

    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_keeps_each_delay_within_its_fraction_of_the_base() -> None:
    policy = RetryPolicy(initial_delay=1.0, max_delay=100.0, jitter=0.5)

    for failures, base in ((1, 1.0), (2, 2.0), (3, 4.0)):
        delays = [policy.delay(failures) for _ in range(200)]
        assert all(base * 0.5 <= d <= base for d in delays)
        assert len(set(delays)) > 1


def test_delays_grow_even_with_full_jitter_on_average() -> None:
    policy = RetryPolicy(initial_delay=0.01, max_delay=10.0)

    first = sum(policy.delay(1) for _ in range(200))
    third = sum(policy.delay(3) for _ in range(200))

    assert third > 2 * first


def test_max_attempts_bounds_the_retries() -> None:
    assert not RetryPolicy().gives_up_after(1_000)
    assert not RetryPolicy(max_attempts=3).gives_up_after(2)
    assert RetryPolicy(max_attempts=3).gives_up_after(3)


@pytest.mark.parametrize(
    "options",
    [
        {"initial_delay": -1},
        {"initial_delay": 2, "max_delay": 1},
        {"multiplier": 0.5},
        {"jitter": 1.5},
    ],
)
def test_nonsensical_policies_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="RetryPolicy needs"):
        RetryPolicy(**options)


def test_the_delay_stays_at_its_ceiling_after_thousands_of_failures_in_a_row() -> None:
    # multiplier ** 1025 overflows a float: a relay hours into a broker outage crashed.
    policy = RetryPolicy(initial_delay=0.05, max_delay=10.0, jitter=0)
    assert policy.delay(1026) == policy.delay(100_000) == 10.0
