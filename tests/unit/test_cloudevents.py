"""The CloudEvents 1.0 codec: what the official SDK reads, round trips, and garbage."""

from __future__ import annotations

import ast
import json
import pickle
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.bindings import http as sdk_http
from cloudevents.core.bindings import kafka as sdk_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkEvent
from cloudevents.v1 import http as sdk_legacy_http
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tidings.contracts.cloud_event as cloud_event
import tidings.contracts.cloudevents as codec
import tidings.contracts.envelope as envelope
from tidings.contracts.cloudevents import (
    STRUCTURED_CONTENT_TYPE,
    CloudEvent,
    decode_binary,
    decode_structured,
    encode_binary,
    encode_structured,
    format_time,
)
from tidings.errors import ContractError, DecodeError, MessageTooLargeError

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
PAYLOAD = {"order_id": "o-1", "note": "naïve café ☕ 注文", "lines": [{"sku": "A", "qty": 2}]}
BINARY_BINDINGS = [
    pytest.param("ce-", False, id="kafka-style-ce-dash"),
    pytest.param("ce-", True, id="http-percent-encoded"),
    pytest.param("ce_", False, id="kafka-ce-underscore"),
    pytest.param("cloudEvents:", False, id="amqp-colon"),
]


def full_event(**changes: Any) -> CloudEvent:
    """An event with every attribute tidings knows set, unicode included."""
    event = CloudEvent(
        id="0190b7e2-7c1a-7000-8000-000000000001",
        source="/contexts/ordering",
        type="ordering.order.placed",
        dataversion=3,
        time="2026-01-02T03:04:05.678901Z",
        subject="order-ключ-1",
        datacontenttype="application/json",
        correlationid="corr-1",
        causationid="cause-1",
        traceparent=TRACEPARENT,
        tracestate="vendor=abc,other=x%y",
        data_json=json.dumps(PAYLOAD, separators=(",", ":"), ensure_ascii=False).encode(),
        extensions={"tenant": "acme", "priority": 7, "replay": True},
        dataschema="https://schemas.example.com/order-placed/3",
    )
    return replace(event, **changes)


def sdk_read_structured(body: bytes) -> SdkEvent:
    message = sdk_http.HTTPMessage(headers={"content-type": STRUCTURED_CONTENT_TYPE}, body=body)
    event = sdk_http.from_structured(message, JSONFormat())
    assert isinstance(event, SdkEvent)
    return event


def sdk_attributes_of(event: CloudEvent) -> dict[str, Any]:
    """What the SDK should report for ``event``, every value as a string (binary mode)."""
    return {
        "specversion": "1.0",
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "subject": event.subject,
        "datacontenttype": event.datacontenttype,
        "dataschema": event.dataschema,
        "dataversion": str(event.dataversion),
        "correlationid": event.correlationid,
        "causationid": event.causationid,
        "traceparent": event.traceparent,
        "tracestate": event.tracestate,
        "tenant": "acme",
        "priority": "7",
        "replay": "true",
    }


# --- The official SDK reads what tidings writes ---------------------------------------


def test_the_sdk_reads_a_structured_event_with_every_attribute_intact() -> None:
    event = full_event()

    read = sdk_read_structured(encode_structured(event))

    assert read.get_id() == event.id
    assert read.get_source() == event.source
    assert read.get_type() == event.type
    assert read.get_time() == datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert read.get_subject() == "order-ключ-1"
    assert read.get_datacontenttype() == "application/json"
    assert read.get_dataschema() == event.dataschema
    assert read.get_data() == PAYLOAD
    assert read.get_extension("dataversion") == 3
    assert read.get_extension("correlationid") == "corr-1"
    assert read.get_extension("causationid") == "cause-1"
    assert read.get_extension("traceparent") == TRACEPARENT
    assert read.get_extension("tracestate") == "vendor=abc,other=x%y"
    assert read.get_extension("tenant") == "acme"
    assert read.get_extension("priority") == 7
    assert read.get_extension("replay") is True


def test_the_sdk_reads_a_binary_http_event_with_every_attribute_intact() -> None:
    event = full_event(source="/contexts/order ing%20")
    headers, body = encode_binary(event, percent_encode=True)

    read = sdk_http.from_binary(sdk_http.HTTPMessage(headers=headers, body=body), JSONFormat())

    attributes = read.get_attributes()
    assert attributes.pop("time") == datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert attributes == sdk_attributes_of(event)
    assert read.get_data() == PAYLOAD


def test_percent_encoded_headers_are_printable_ascii_as_the_http_binding_requires() -> None:
    headers, _ = encode_binary(full_event(source='/a b"c%d'), percent_encode=True)

    assert headers["ce-source"] == "/a%20b%22c%25d"
    assert headers["ce-subject"] == "order-%D0%BA%D0%BB%D1%8E%D1%87-1"
    assert all(value.isascii() and value.isprintable() for value in headers.values())


def test_the_sdk_reads_a_binary_kafka_event_with_utf8_header_values() -> None:
    event = full_event()
    headers, body = encode_binary(event, prefix="ce_")
    message = sdk_kafka.KafkaMessage(
        headers={name: value.encode() for name, value in headers.items()}, key=None, value=body
    )

    read = sdk_kafka.from_binary(message, JSONFormat())

    attributes = read.get_attributes()
    assert attributes.pop("time") == datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert attributes == sdk_attributes_of(event)
    assert read.get_data() == PAYLOAD


def test_the_legacy_sdk_api_reads_structured_and_binary_events() -> None:
    event = full_event()

    structured = sdk_legacy_http.from_http(
        {"content-type": STRUCTURED_CONTENT_TYPE}, encode_structured(event)
    )
    binary = sdk_legacy_http.from_http(*encode_binary(event))

    for read in (structured, binary):
        assert read["id"] == event.id
        assert read["subject"] == event.subject
        assert read["time"] == event.time
        assert read["traceparent"] == TRACEPARENT
        assert read.data == PAYLOAD
    assert structured["dataversion"] == 3
    assert binary["dataversion"] == "3"


def test_an_event_without_time_or_optional_attributes_is_still_read_by_the_sdk() -> None:
    event = CloudEvent(id="1", source="/s", type="t")

    read = sdk_read_structured(encode_structured(event))

    assert read.get_id() == "1"
    assert read.get_data() is None
    assert read.get_extension("dataversion") == 1


# --- tidings reads what the SDK writes -------------------------------------------------


def sdk_event(data: Any = PAYLOAD) -> SdkEvent:
    return SdkEvent(
        attributes={
            "id": "sdk-1",
            "source": "/sdk",
            "type": "ordering.order.placed",
            "time": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            "subject": "ключ",
            "datacontenttype": "application/json",
            "dataschema": "https://schemas.example.com/x",
            "dataversion": 2,
            "correlationid": "corr",
            "causationid": "cause",
            "traceparent": TRACEPARENT,
            "tracestate": "a=b",
            "tenant": "acme",
        },
        data=data,
    )


def assert_reads_sdk_event(event: CloudEvent) -> None:
    assert (event.id, event.source, event.type) == ("sdk-1", "/sdk", "ordering.order.placed")
    assert event.time == "2026-01-02T03:04:05Z"
    assert event.subject == "ключ"
    assert event.dataschema == "https://schemas.example.com/x"
    assert event.dataversion == 2
    assert (event.correlationid, event.causationid) == ("corr", "cause")
    assert (event.traceparent, event.tracestate) == (TRACEPARENT, "a=b")
    assert event.extensions == {"tenant": "acme"}
    assert event.data == PAYLOAD


def test_tidings_decodes_a_structured_event_the_sdk_wrote() -> None:
    message = sdk_http.to_structured(sdk_event(), JSONFormat())

    assert_reads_sdk_event(decode_structured(message.body))


def test_tidings_decodes_a_percent_encoded_binary_http_event_the_sdk_wrote() -> None:
    message = sdk_http.to_binary(sdk_event(), JSONFormat())

    decoded = decode_binary(message.headers, message.body, percent_decode=True)

    assert_reads_sdk_event(decoded)


def test_tidings_decodes_a_binary_kafka_event_the_sdk_wrote() -> None:
    message = sdk_kafka.to_binary(sdk_event(), JSONFormat())

    decoded = decode_binary(message.headers, message.value, prefix="ce_")

    assert_reads_sdk_event(decoded)


def test_an_sdk_event_without_data_decodes_as_null_data_in_both_modes() -> None:
    event = sdk_event(data=None)
    structured = sdk_http.to_structured(event, JSONFormat())
    binary = sdk_http.to_binary(event, JSONFormat())

    assert decode_structured(structured.body).data is None
    assert binary.body == b""
    assert decode_binary(binary.headers, binary.body, percent_decode=True).data is None


def test_an_sdk_event_without_dataversion_is_contract_version_1() -> None:
    message = sdk_http.to_structured(
        SdkEvent(attributes={"id": "1", "source": "/s", "type": "t"}, data={}), JSONFormat()
    )

    assert decode_structured(message.body).dataversion == 1


# --- Round trips -----------------------------------------------------------------------


def test_a_structured_round_trip_preserves_every_field() -> None:
    event = full_event()

    assert decode_structured(encode_structured(event)) == event


def test_structured_decoding_keeps_the_payload_value_in_compact_json() -> None:
    event = full_event(data_json=b'{ "a" : [1, 2.50],\n "b" : "\\u00e9" }')

    decoded = decode_structured(encode_structured(event))

    assert decoded.data == event.data
    assert decoded.data_json == '{"a":[1,2.5],"b":"é"}'.encode()


def test_the_structured_encoder_splices_the_payload_bytes_in_unchanged() -> None:
    data_json = b'{ "b" : 1.50,\n "a" : "\\u00e9" }'

    body = encode_structured(full_event(data_json=data_json))

    assert body.endswith(b',"data":' + data_json + b"}")


@pytest.mark.parametrize(("prefix", "percent"), BINARY_BINDINGS)
def test_a_binary_round_trip_preserves_every_field_with_extension_values_as_strings(
    prefix: str, percent: bool
) -> None:
    event = full_event()

    headers, body = encode_binary(event, prefix, percent_encode=percent)
    decoded = decode_binary(headers, body, prefix=prefix, percent_decode=percent)

    assert decoded == replace(
        event, extensions={"tenant": "acme", "priority": "7", "replay": "true"}
    )
    assert body == event.data_json


def test_binary_headers_may_arrive_as_bytes_with_any_name_case() -> None:
    headers, body = encode_binary(full_event(), "ce_")
    shouted = {name.upper().encode(): value.encode() for name, value in headers.items()}

    assert decode_binary(shouted, body, prefix="ce_").id == full_event().id


def test_binary_headers_from_amqp_may_carry_native_integers_booleans_and_datetimes() -> None:
    headers: dict[str, Any] = {
        "cloudEvents:specversion": "1.0",
        "cloudEvents:id": "1",
        "cloudEvents:source": "/s",
        "cloudEvents:type": "t",
        "cloudEvents:time": datetime(2026, 1, 2, 3, 4, 5),
        "cloudEvents:dataversion": 4,
        "cloudEvents:replay": False,
        "cloudEvents:subject": None,
    }

    decoded = decode_binary(headers, b"{}", prefix="cloudEvents:")

    assert decoded.time == "2026-01-02T03:04:05Z"
    assert decoded.dataversion == 4
    assert decoded.extensions == {"replay": "false"}
    assert decoded.subject is None


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(alphabet=st.characters(codec="utf-8"), max_size=8), children, max_size=4
        )
    ),
    max_leaves=12,
)
TEXT = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=30)
OFFSETS = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)
EXTENSION_NAMES = st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True).filter(
    lambda name: name not in cloud_event._KNOWN
)


@st.composite
def valid_events(draw: st.DrawFn) -> CloudEvent:
    moment = draw(st.none() | st.datetimes(timezones=OFFSETS))
    return CloudEvent(
        id=draw(TEXT),
        source=draw(TEXT),
        type=draw(TEXT),
        dataversion=draw(st.integers(min_value=1, max_value=2**31 - 1)),
        time=None if moment is None else moment.isoformat(),
        subject=draw(st.none() | TEXT),
        datacontenttype=draw(
            st.sampled_from(["application/json", "application/vnd.acme.order+json; charset=utf-8"])
        ),
        correlationid=draw(st.none() | TEXT),
        causationid=draw(st.none() | TEXT),
        traceparent=draw(st.none() | TEXT),
        tracestate=draw(st.none() | TEXT),
        dataschema=draw(st.none() | TEXT),
        data_json=json.dumps(draw(JSON_VALUES), separators=(",", ":"), ensure_ascii=False).encode(),
        extensions=draw(
            st.dictionaries(
                EXTENSION_NAMES,
                TEXT | st.booleans() | st.integers(min_value=-(2**31), max_value=2**31 - 1),
                max_size=3,
            )
        ),
    )


@settings(max_examples=100, deadline=None)
@given(valid_events())
def test_any_valid_event_survives_a_structured_round_trip(event: CloudEvent) -> None:
    assert decode_structured(encode_structured(event)) == event


@settings(max_examples=100, deadline=None)
@given(valid_events(), st.sampled_from([("ce-", False), ("ce-", True), ("ce_", False)]))
def test_any_valid_event_survives_a_binary_round_trip(
    event: CloudEvent, binding: tuple[str, bool]
) -> None:
    prefix, percent = binding
    headers, body = encode_binary(event, prefix, percent_encode=percent)

    decoded = decode_binary(headers, body, prefix=prefix, percent_decode=percent)

    as_strings = {name: codec._header_text(value) for name, value in event.extensions.items()}
    assert decoded == replace(event, extensions=as_strings)


@settings(max_examples=75, deadline=None)
@given(valid_events())
def test_the_sdk_reads_any_valid_event_in_both_modes(event: CloudEvent) -> None:
    structured = sdk_read_structured(encode_structured(event))
    headers, body = encode_binary(event, percent_encode=True)
    binary = sdk_http.from_binary(sdk_http.HTTPMessage(headers=headers, body=body), JSONFormat())

    for read in (structured, binary):
        assert (read.get_id(), read.get_source(), read.get_type()) == (
            event.id,
            event.source,
            event.type,
        )
        assert read.get_subject() == event.subject
        assert read.get_extension("correlationid") == event.correlationid
        if event.time is not None:
            assert read.get_time() == datetime.fromisoformat(event.time)
    assert structured.get_data() == event.data
    assert structured.get_extension("dataversion") == event.dataversion
    assert {name: structured.get_extension(name) for name in event.extensions} == dict(
        event.extensions
    )
    if isinstance(event.data, dict):
        assert binary.get_data() == event.data


# --- Events are valid by construction ----------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"id": ""},
        {"source": 7},
        {"type": "\ud800"},
        {"subject": ""},
        {"dataschema": ""},
        {"time": "2026-01-02T03:04:05"},
        {"time": "2026-01-02"},
        {"time": "2026-13-02T03:04:05Z"},
        {"datacontenttype": "text/plain"},
        {"dataversion": 0},
        {"dataversion": 2**31},
        {"dataversion": True},
        {"data_json": b""},
        {"data_json": "{}"},
        {"extensions": {"Tenant": "x"}},
        {"extensions": {"ten-ant": "x"}},
        {"extensions": {"id": "override"}},
        {"extensions": {"data": "x"}},
        {"extensions": {"ratio": 0.5}},
        {"extensions": {"big": 2**40}},
    ],
    ids=repr,
)
def test_an_event_breaking_the_cloudevents_rules_cannot_be_built(changes: dict[str, Any]) -> None:
    with pytest.raises(ContractError, match="invalid CloudEvent"):
        full_event(**changes)


def test_time_is_written_in_utc_with_a_z_and_naive_times_are_taken_as_utc() -> None:
    paris = timezone(timedelta(hours=2))

    assert format_time(datetime(2026, 1, 2, 5, 4, 5, tzinfo=paris)) == "2026-01-02T03:04:05Z"
    assert format_time(datetime(2026, 1, 2, 3, 4, 5, 120000)) == "2026-01-02T03:04:05.120000Z"


# --- Decoding rejects what is not a valid CloudEvent -------------------------------------


def structured(**attributes: Any) -> bytes:
    document = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t", **attributes}
    return json.dumps({k: v for k, v in document.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b"", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b"\xff\xfe{}", "not UTF-8"),
        (structured(specversion="0.3"), "specversion"),
        (structured(specversion=...), "specversion"),
        (structured(id=...), "'id'"),
        (structured(source=""), "'source'"),
        (structured(type=5), "'type'"),
        (structured(time="yesterday"), "time"),
        (structured(datacontenttype="text/plain"), "datacontenttype"),
        (structured(dataversion="two"), "dataversion"),
        (structured(dataversion=-1), "dataversion"),
        (structured(subject=["a"]), "'subject'"),
        (structured(data_base64="AAAA"), "data_base64"),
        (structured(Bad_Name="x"), "extension name"),
        (structured(nested={"a": 1}), "extension 'nested'"),
        (structured(ratio=1.5), "extension 'ratio'"),
        (b'{"specversion":"1.0","id":"1","source":"/s","type":"t","data":NaN}', "NaN"),
        (b'{"specversion":"1.0","id":"1","source":"/s","type":"t","data":1e400}', "range"),
        (b'{"specversion":"1.0","id":"\\ud800","source":"/s","type":"t"}', "'id'"),
        (b'{"specversion":"1.0","id":"1","source":"/s","type":"t","data":"\\udc00"}', "UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "deeper than 65 levels"),
        (pickle.dumps({"id": "1"}), "not"),
    ],
    ids=lambda value: repr(value)[:40],
)
def test_decode_structured_rejects_an_invalid_message_saying_why(
    body: bytes, complaint: str
) -> None:
    with pytest.raises(DecodeError, match=complaint):
        decode_structured(body)


def test_null_optional_attributes_count_as_absent() -> None:
    decoded = decode_structured(structured(subject=None, time=None, dataversion=None, ext=None))

    assert (decoded.subject, decoded.time, decoded.dataversion) == (None, None, 1)
    assert decoded.extensions == {}


def test_the_size_limit_counts_utf8_bytes_of_text_input() -> None:
    body = encode_structured(full_event(data_json=json.dumps("é" * 100).encode()))
    text = body.decode()

    assert decode_structured(body, max_bytes=len(body)).id == full_event().id
    assert decode_structured(text, max_bytes=len(body)).id == full_event().id
    with pytest.raises(MessageTooLargeError, match=f"{len(body)} bytes"):
        decode_structured(text, max_bytes=len(body) - 1)
    with pytest.raises(MessageTooLargeError):
        decode_binary({}, b"{}" * 10, max_bytes=19)


@pytest.mark.parametrize(
    ("headers", "complaint"),
    [
        ({"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s"}, "'type'"),
        ({"ce-specversion": b"\xff", "ce-id": "1"}, "not UTF-8"),
        ({"ce-specversion": 1.0}, "unsupported value type float"),
        ({"ce-specversion": ["1.0"]}, "unsupported value type list"),
        (
            {
                "ce-specversion": "1.0",
                "ce-id": "1",
                "ce-source": "/s",
                "ce-type": "t",
                "ce-dataversion": "9" * 5000,
            },
            "dataversion",
        ),
        (
            {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t", "ce-": "x"},
            "extension name",
        ),
    ],
    ids=repr,
)
def test_decode_binary_rejects_invalid_headers_saying_why(
    headers: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(DecodeError, match=complaint):
        decode_binary(headers, b"{}")


def test_decode_binary_rejects_a_body_that_is_not_json_and_bad_percent_escapes() -> None:
    headers, _ = encode_binary(full_event())

    with pytest.raises(DecodeError, match="body is not JSON"):
        decode_binary(headers, b"{'a': 1}")
    with pytest.raises(DecodeError, match="percent-encodes"):
        decode_binary({**headers, "ce-subject": "%ff"}, b"{}", percent_decode=True)
    with pytest.raises(DecodeError, match="mapping"):
        decode_binary([("ce-id", "1")], b"{}")  # type: ignore[arg-type]


def test_nothing_is_deserialised_with_pickle_or_eval() -> None:
    forbidden_modules = {"pickle", "marshal", "shelve", "dill", "cloudpickle", "yaml"}
    # name -> the only owner allowed to provide it (json.loads, re.compile)
    forbidden_calls = {
        "eval": None,
        "exec": None,
        "__import__": None,
        "literal_eval": None,
        "compile": "re",
        "loads": "json",
        "load": "json",
    }
    for module in (codec, envelope):
        tree = ast.parse(Path(str(module.__file__)).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = {alias.name.split(".")[0] for alias in node.names}
                names.add((getattr(node, "module", None) or "").split(".")[0])
                assert not names & forbidden_modules, f"{module.__name__} imports {names}"
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                owner = getattr(getattr(func, "value", None), "id", None)
                if name in forbidden_calls:
                    allowed = forbidden_calls[name]
                    assert owner == allowed is not None, f"{module.__name__} calls {name}"


# --- Fuzz: garbage raises only the codec's own errors ------------------------------------


def decodes_or_rejects(decode: Any, *args: Any, **kwargs: Any) -> CloudEvent | None:
    """Decode, allowing only DecodeError; whatever decodes must survive re-encoding."""
    try:
        event = decode(*args, **kwargs)
    except DecodeError:
        return None
    assert isinstance(event, CloudEvent)
    again = decode_structured(encode_structured(event))
    assert replace(again, data_json=event.data_json) == event
    assert decode_structured(encode_structured(again)) == again
    return event


VALID_ATTRIBUTES: dict[str, Any] = json.loads(encode_structured(full_event()))
ANY_JSON = JSON_VALUES | st.floats() | st.text()
GARBAGE_FOR_ATTRIBUTES = ANY_JSON | st.sampled_from(
    ["", "1.0", "0", "2026-01-02T03:04:05Z", "\ud800", "application/xml", -1, 2**31, 2**70]
)


@st.composite
def mangled_attributes(draw: st.DrawFn) -> dict[str, Any]:
    """The attributes of a valid event, some dropped, some replaced, some added."""
    document = dict(VALID_ATTRIBUTES)
    for name in draw(st.lists(st.sampled_from(sorted(document)), max_size=4, unique=True)):
        if draw(st.booleans()):
            del document[name]
        else:
            document[name] = draw(GARBAGE_FOR_ATTRIBUTES)
    extra = draw(st.dictionaries(st.text(max_size=12), GARBAGE_FOR_ATTRIBUTES, max_size=3))
    document.update(extra)
    return document


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_escape_as_anything_but_decode_errors(body: bytes) -> None:
    decodes_or_rejects(decode_structured, body)
    decodes_or_rejects(decode_binary, encode_binary(full_event())[0], body)


@settings(max_examples=200, deadline=None)
@given(ANY_JSON)
def test_random_json_values_never_escape_as_anything_but_decode_errors(value: Any) -> None:
    decodes_or_rejects(decode_structured, json.dumps(value))
    decodes_or_rejects(decode_structured, json.dumps(value).encode())


@settings(max_examples=250, deadline=None)
@given(mangled_attributes())
def test_mangled_attributes_never_escape_as_anything_but_decode_errors(
    document: dict[str, Any],
) -> None:
    decodes_or_rejects(decode_structured, json.dumps(document))
    headers = {f"ce-{name}": value for name, value in document.items() if name != "data"}
    decodes_or_rejects(decode_binary, headers, json.dumps(document.get("data")).encode())


HEADER_VALUES = (
    st.none()
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.integers()
    | st.booleans()
    | st.floats()
    | st.datetimes(timezones=st.none() | st.timezones())
    | st.sampled_from([datetime.min.replace(tzinfo=timezone(timedelta(hours=1)))])
    | st.lists(st.integers(), max_size=2)
    | st.builds(bytearray, st.binary(max_size=8))
)
HEADER_NAMES = (
    st.sampled_from(
        [
            "ce-specversion",
            "ce-id",
            "ce-source",
            "ce-type",
            "ce-time",
            "ce-dataversion",
            "content-type",
            "ce-subject",
            "CE-ID",
            "ce-",
            "ce-x",
        ]
    )
    | st.text(max_size=12)
    | st.binary(max_size=8)
    | st.integers()
)


@settings(max_examples=250, deadline=None)
@given(
    st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=8),
    st.booleans(),
    st.binary(max_size=40) | st.just(b"{}"),
)
def test_garbage_headers_never_escape_as_anything_but_decode_errors(
    garbage: dict[Any, Any], percent: bool, body: bytes
) -> None:
    valid, _ = encode_binary(full_event())
    decodes_or_rejects(decode_binary, garbage, body, percent_decode=percent)
    decodes_or_rejects(decode_binary, {**valid, **garbage}, body, percent_decode=percent)


ENCODED = encode_structured(full_event())


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=len(ENCODED) - 1))
def test_truncated_messages_are_rejected_as_decode_errors(cut: int) -> None:
    with pytest.raises(DecodeError):
        decode_structured(ENCODED[:cut])
    headers, body = encode_binary(full_event())
    if cut < len(body) and body[:cut].strip():
        with pytest.raises(DecodeError):
            decode_binary(headers, body[:cut])


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=0, max_value=len(ENCODED)),
    st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80"]),
)
def test_invalid_utf8_anywhere_is_rejected_as_a_decode_error(at: int, bad: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_structured(ENCODED[:at] + bad + ENCODED[at:])
    headers, body = encode_binary(full_event())
    with pytest.raises(DecodeError):
        decode_binary(headers, body[: at % len(body)] + bad + body[at % len(body) :])


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=1, max_value=200_000), st.sampled_from(["[", '{"a":']))
def test_deeply_nested_json_is_decoded_or_rejected_never_crashes(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    nested = opener * depth + "1" + closer * depth
    head = ENCODED.decode().split(',"data":', 1)[0]

    decodes_or_rejects(decode_structured, f'{head},"data":{nested}}}')
    decodes_or_rejects(decode_binary, encode_binary(full_event())[0], nested.encode())


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=5_000), st.sampled_from(["a", "é", "☕", "😀"]))
def test_huge_messages_are_refused_by_size_before_parsing(size: int, char: str) -> None:
    text = json.dumps({"padding": char * size})
    limit = 2_000

    fits = len(text.encode()) <= limit
    for body in (text, text.encode()):
        if fits:
            decodes_or_rejects(decode_structured, body, max_bytes=limit)
        else:
            with pytest.raises(MessageTooLargeError):
                decode_structured(body, max_bytes=limit)


def test_a_binary_body_escaping_a_lone_surrogate_is_refused_as_structured_mode_refuses_it() -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "e-1", "ce-source": "/s", "ce-type": "t"}
    with pytest.raises(DecodeError, match="lone surrogate"):
        decode_binary(headers, b'"\\ud800"')
    with pytest.raises(DecodeError, match="UTF-8"):
        decode_structured(json.dumps({**{k[3:]: v for k, v in headers.items()}, "data": "\ud800"}))
    assert decode_binary(headers, b'"caf\\u00e9"').data == "café"
