"""The documented limits (SECURITY.md, "Limits"), each enforced with a clear error."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tidings.consumer import Consumer
from tidings.contracts.cloudevents import decode_binary, decode_structured
from tidings.contracts.limits import (
    MAX_ATTRIBUTE_LENGTH,
    MAX_ATTRIBUTES,
    MAX_BATCH_SIZE,
    MAX_DEPTH,
    check_depth,
)
from tidings.errors import DecodeError, LimitExceededError, MessageTooLargeError
from tidings.outbox.relay import Relay
from tidings.transports.memory import MemoryTransport

ENVELOPE: dict[str, Any] = {"specversion": "1.0", "id": "1", "source": "s", "type": "t"}
HEADERS = {f"ce-{name}": value for name, value in ENVELOPE.items()}


def nested(depth: int) -> Any:
    value: Any = 0
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def test_payloads_nest_up_to_the_limit_in_both_modes() -> None:
    deepest = json.dumps(nested(MAX_DEPTH))
    assert decode_structured(json.dumps({**ENVELOPE, "data": nested(MAX_DEPTH)})).data
    assert decode_binary(HEADERS, deepest.encode()).data

    with pytest.raises(LimitExceededError, match=f"deeper than {MAX_DEPTH + 1}"):
        decode_structured(json.dumps({**ENVELOPE, "data": nested(MAX_DEPTH + 1)}))
    with pytest.raises(LimitExceededError, match=f"deeper than {MAX_DEPTH}"):
        decode_binary(HEADERS, json.dumps(nested(MAX_DEPTH + 1)).encode())


def test_brackets_inside_strings_and_wide_payloads_do_not_count_as_depth() -> None:
    check_depth(json.dumps({"text": "[" * 1000 + "{" * 1000, "list": [[1]] * 5000}))


def test_the_depth_scan_is_cheap_on_a_hostile_megabyte() -> None:
    text = "[" * 500_000 + "]" * 500_000
    started = time.perf_counter()
    with pytest.raises(LimitExceededError):
        check_depth(text)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_at_most_max_attributes(mode: str) -> None:
    fits = {f"x{i}": "v" for i in range(MAX_ATTRIBUTES - len(ENVELOPE))}
    too_many = {**fits, "onemore": "v"}
    decode(mode, fits)
    with pytest.raises(LimitExceededError, match=f"more than {MAX_ATTRIBUTES} attributes"):
        decode(mode, too_many)


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_attribute_values_at_most_max_attribute_length(mode: str) -> None:
    decode(mode, {"note": "n" * MAX_ATTRIBUTE_LENGTH})
    with pytest.raises(LimitExceededError, match=f"the limit is {MAX_ATTRIBUTE_LENGTH}"):
        decode(mode, {"note": "n" * (MAX_ATTRIBUTE_LENGTH + 1)})


def decode(mode: str, extensions: dict[str, str]) -> None:
    if mode == "binary":
        headers = {**HEADERS, **{f"ce-{name}": value for name, value in extensions.items()}}
        decode_binary(headers, b"{}")
    else:
        decode_structured(json.dumps({**ENVELOPE, **extensions}))


def test_the_size_limit_comes_first_and_is_a_limit() -> None:
    with pytest.raises(MessageTooLargeError, match="exceeds the 10-byte limit") as raised:
        decode_structured(b"[" * 11, max_bytes=10)
    assert isinstance(raised.value, LimitExceededError)
    assert isinstance(raised.value, DecodeError)


@pytest.mark.parametrize("size", [0, MAX_BATCH_SIZE + 1])
def test_batch_sizes_are_bounded(size: int) -> None:
    from tidings import BoundedContext

    context = BoundedContext("limits", database_url="sqlite://", broker_url="memory://limits")
    with pytest.raises(ValueError, match=f"between 1 and {MAX_BATCH_SIZE}"):
        Relay(context, MemoryTransport("memory://limits"), batch_size=size)
    with pytest.raises(ValueError, match=f"between 1 and {MAX_BATCH_SIZE}"):
        Consumer(context, MemoryTransport("memory://limits"), batch_size=size)
