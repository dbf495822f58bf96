"""The RabbitMQ transport's sharding options and names, without a broker."""

from __future__ import annotations

import pytest

from tidings.errors import ConfigurationError
from tidings.transports.rabbitmq_options import (
    parse_url,
    shard_count_marker,
    shard_exchange_name,
    shard_queue_name,
)
from tidings.transports.rabbitmq_topology import _recorded_count


def test_shards_default_to_one_and_are_bounded() -> None:
    assert parse_url("amqp://localhost/")[1].shards == 1
    client_url, options = parse_url("amqp://localhost/?shards=8&heartbeat=5")
    assert options.shards == 8
    assert "shards" not in client_url and "heartbeat=5" in client_url
    for bad in ("0", "257", "two"):
        with pytest.raises(ConfigurationError):
            parse_url(f"amqp://localhost/?shards={bad}")


def test_shard_names_derive_from_the_group() -> None:
    assert shard_queue_name("basket", 3) == "tidings.basket.3"
    assert shard_exchange_name("basket") == "tidings.basket.shards"
    assert shard_count_marker("basket", 4) == "tidings.basket.shards:4"
    with pytest.raises(ConfigurationError, match="too long"):
        shard_count_marker("g" * 240, 4)


@pytest.mark.parametrize(
    "text",
    [
        # RabbitMQ 3.10
        "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange "
        "'tidings.g.shards' in vhost '/': received 'tidings.g.shards:3' but current is "
        "'tidings.g.shards:2'",
        # the wording of other versions
        "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange "
        "'tidings.g.shards' in vhost '/': received the value 'tidings.g.shards:3' of type "
        "'longstr' but current is the value 'tidings.g.shards:2' of type 'longstr'",
    ],
)
def test_the_recorded_count_is_read_from_the_refusal(text: str) -> None:
    assert _recorded_count(Exception(text)) == 2


def test_a_refusal_about_something_else_has_no_count() -> None:
    text = "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'tidings.g'"
    assert _recorded_count(Exception(text)) is None
