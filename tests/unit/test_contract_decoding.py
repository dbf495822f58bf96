"""From a received CloudEvent back to the integration event contract it carries."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

import pytest
from cloudevents.core.bindings import http as sdk_http
from cloudevents.core.formats.json import JSONFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.contracts import (
    CloudEvent,
    ContractRegistry,
    IntegrationEvent,
    cloud_event_from_row,
    decode_binary,
    decode_structured,
    encode_binary,
    encode_structured,
    outbox_row,
    to_contract,
)
from tidings.errors import (
    ContractError,
    ContractValidationError,
    DecodeError,
    UnknownContractError,
)

TYPE = "tests.contract_decoding.order_placed"
EVENT_ID = "0190b7e2-7c1a-7000-8000-000000000001"
OCCURRED = "2026-01-02T03:04:05.678901Z"


class OrderPlacedIntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = TYPE
    event_version: ClassVar[int] = 1

    order_id: str
    quantity: int
    total: Decimal
    note: str | None = None


class OrderPlacedV2IntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = TYPE
    event_version: ClassVar[int] = 2

    order_id: str
    lines: list[str]


def received(payload: Any, *, version: int = 1, **changes: Any) -> CloudEvent:
    """A CloudEvent as a consumer gets it, carrying ``payload`` as its data."""
    event = CloudEvent(
        id=EVENT_ID,
        source="/contexts/ordering",
        type=TYPE,
        dataversion=version,
        time=OCCURRED,
        data_json=json.dumps(payload).encode(),
    )
    return replace(event, **changes)


def a_placed_order() -> OrderPlacedIntegrationEvent:
    return OrderPlacedIntegrationEvent(
        order_id="o-1",
        quantity=3,
        total=Decimal("12.50"),
        note="für Zoë ☕",
        occurred_at=datetime(2026, 1, 2, 5, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2))),
    )


def sent(event: IntegrationEvent, **row_changes: Any) -> CloudEvent:
    """What the relay sends for ``event``: its outbox row as a CloudEvent."""
    row = outbox_row(
        event,
        source="/contexts/ordering",
        correlation_id="corr-1",
        causation_id="cause-1",
        created_at=datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC),
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    return cloud_event_from_row({**row, **row_changes})


# --- The contract the envelope names ---------------------------------------------------


def test_a_published_contract_arrives_equal_through_structured_mode() -> None:
    event = a_placed_order()

    assert to_contract(decode_structured(encode_structured(sent(event)))) == event


@pytest.mark.parametrize(("prefix", "percent"), [("ce-", True), ("ce_", False)])
def test_a_published_contract_arrives_equal_through_binary_mode(prefix: str, percent: bool) -> None:
    event = a_placed_order()
    headers, body = encode_binary(sent(event), prefix, percent_encode=percent)

    decoded = decode_binary(headers, body, prefix=prefix, percent_decode=percent)

    assert to_contract(decoded) == event


def test_the_relayed_envelope_names_the_contract_and_carries_the_context() -> None:
    event = a_placed_order()

    cloud_event = sent(event)

    assert (cloud_event.type, cloud_event.dataversion) == (TYPE, 1)
    assert cloud_event.id == str(event.event_id)
    assert cloud_event.time == OCCURRED
    assert cloud_event.subject == "o-1"
    assert (cloud_event.correlationid, cloud_event.causationid) == ("corr-1", "cause-1")
    assert "event_id" not in cloud_event.data and "occurred_at" not in cloud_event.data


def test_a_row_read_back_with_a_naive_time_or_bytes_payload_still_makes_a_valid_event() -> None:
    event = a_placed_order()
    naive = datetime(2026, 1, 2, 3, 4, 5, 678901)
    payload = outbox_row(
        event, source="/s", correlation_id=None, causation_id=None, created_at=naive
    )["payload"].encode()

    cloud_event = sent(event, occurred_at=naive, payload=memoryview(payload))

    assert cloud_event.time == OCCURRED
    read = sdk_http.from_structured(
        sdk_http.HTTPMessage(headers={}, body=encode_structured(cloud_event)), JSONFormat()
    )
    assert read.get_time() == naive.replace(tzinfo=UTC)


def test_the_event_id_and_time_come_from_the_envelope_not_the_payload() -> None:
    payload = {
        "order_id": "o-1",
        "quantity": 1,
        "total": "1",
        "event_id": "0190b7e2-7c1a-7000-8000-0000000000ff",
        "occurred_at": "1999-01-01T00:00:00Z",
    }

    contract = to_contract(received(payload))

    assert contract.event_id == UUID(EVENT_ID)
    assert contract.occurred_at == datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def test_the_dataversion_selects_the_contract_version() -> None:
    first = to_contract(received({"order_id": "o-1", "quantity": 1, "total": "1"}))
    second = to_contract(received({"order_id": "o-1", "lines": ["a", "b"]}, version=2))

    assert isinstance(first, OrderPlacedIntegrationEvent)
    assert isinstance(second, OrderPlacedV2IntegrationEvent)
    assert second.lines == ["a", "b"]


def test_unknown_payload_fields_are_ignored_as_a_tolerant_reader_does() -> None:
    payload = {"order_id": "o-1", "quantity": 1, "total": "1", "added_in_v1_1": {"x": [1]}}

    contract = to_contract(received(payload))

    assert contract == OrderPlacedIntegrationEvent(
        order_id="o-1",
        quantity=1,
        total=Decimal(1),
        event_id=UUID(EVENT_ID),
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    )


def test_a_registry_may_be_passed_in_place_of_the_default_one() -> None:
    registry = ContractRegistry()
    registry.register(OrderPlacedV2IntegrationEvent)

    with pytest.raises(UnknownContractError):
        to_contract(received({}), registry)
    assert isinstance(
        to_contract(received({"order_id": "o", "lines": []}, version=2), registry),
        OrderPlacedV2IntegrationEvent,
    )


# --- What cannot become a contract ------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "version"), [("tests.contract_decoding.nobody", 1), (TYPE, 3)]
)
def test_an_unregistered_type_or_version_is_an_unknown_contract(
    event_type: str, version: int
) -> None:
    with pytest.raises(UnknownContractError, match="add an upcaster") as caught:
        to_contract(received({}, version=version, type=event_type))

    assert (caught.value.event_type, caught.value.version) == (event_type, version)


def test_an_invalid_payload_names_the_contract_and_the_offending_fields() -> None:
    payload = {"order_id": ["not", "a", "string"], "quantity": "many", "total": "1"}

    with pytest.raises(ContractValidationError) as caught:
        to_contract(received(payload))

    message = str(caught.value)
    assert message.startswith(f"{TYPE} v1 payload does not fit OrderPlacedIntegrationEvent: ")
    assert "order_id: Input should be a valid string" in message
    assert "quantity: Input should be a valid integer" in message
    assert isinstance(caught.value, DecodeError)


def test_a_long_list_of_problems_is_summarised() -> None:
    with pytest.raises(ContractValidationError, match=r"\(\+\d+ more\)$"):
        to_contract(received({"lines": list(range(10))}, version=2, id="not-a-uuid", time=None))


def test_an_envelope_id_that_is_not_a_uuid_is_a_validation_error() -> None:
    with pytest.raises(ContractValidationError, match="event_id"):
        to_contract(received({"order_id": "o", "quantity": 1, "total": "1"}, id="order-1"))


@pytest.mark.parametrize("payload", [None, [1, 2], "text", 3])
def test_a_payload_that_is_not_a_json_object_is_a_validation_error(payload: Any) -> None:
    with pytest.raises(ContractValidationError, match="must be a JSON object"):
        to_contract(received(payload))


@pytest.mark.parametrize("data_json", [b"{", b"\xff", b"[" * 50_000 + b"]" * 50_000])
def test_data_that_is_not_json_is_a_decode_error(data_json: bytes) -> None:
    with pytest.raises(DecodeError, match="data is not JSON"):
        to_contract(received({}, data_json=data_json))


# --- Fuzz: garbage payloads raise only the codec's own errors ------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)
FIELD_VALUES = JSON_VALUES | st.sampled_from(["1", "o-1", "1e3", "NaN", "-0", "1.5", "", "\x00"])
FIELDS = st.sampled_from(
    ["order_id", "quantity", "total", "note", "lines", "event_id", "occurred_at", "x"]
)


def contract_or_rejection(event: CloudEvent) -> None:
    try:
        contract = to_contract(event)
    except ContractError:
        return
    assert isinstance(contract, OrderPlacedIntegrationEvent | OrderPlacedV2IntegrationEvent)
    assert contract.event_id == UUID(event.id)


@settings(max_examples=250, deadline=None)
@given(
    st.dictionaries(FIELDS, FIELD_VALUES, max_size=6) | JSON_VALUES,
    st.integers(min_value=1, max_value=3),
    st.sampled_from([EVENT_ID, "x", "0190B7E2-7C1A-7000-8000-000000000001"]),
    st.sampled_from(
        [
            OCCURRED,
            None,
            "2026-01-02T03:04:05+14:00",
            "0001-01-01T00:00:00-23:59",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
        ]
    ),
)
def test_garbage_payloads_become_a_contract_or_a_contract_error(
    payload: Any, version: int, event_id: str, time: str | None
) -> None:
    try:
        data_json = json.dumps(payload).encode()
    except ValueError:  # pragma: no cover - hypothesis floats are JSON-able
        return
    contract_or_rejection(
        received({}, version=version, id=event_id, time=time, data_json=data_json)
    )


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=100), st.integers(min_value=1, max_value=2))
def test_garbage_data_bytes_become_a_contract_error(data_json: bytes, version: int) -> None:
    if not data_json.strip():
        return
    contract_or_rejection(received({}, version=version, data_json=data_json))
