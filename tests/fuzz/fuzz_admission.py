"""Coverage-guided fuzzing (atheris/libFuzzer) of the CloudEvents decoder and the
consumer's admission path: signature check, limits, decoding, type check, contract.

    python tests/fuzz/fuzz_admission.py -atheris_runs=20000 [CORPUS_DIR ...]
    python tests/fuzz/fuzz_admission.py -max_total_time=60

Each input becomes a delivery: the first byte picks structured mode, a binary-mode
binding, or a valid signed event to mutate; the rest is split into headers and a body,
or into the attributes and payload fields to change (``FuzzedDataProvider``). Seeds are
valid events, signed and not (``--seeds DIR`` writes them), so the fuzzer starts
from messages the admission accepts and mutates towards the edges. Any exception that
escapes is a crash: the decoders may only raise ``DecodeError`` and ``admit`` must
always answer with an item, a rejection or ``None``. ``test_fuzz.py`` runs this for a
bounded time in CI.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import atheris

with atheris.instrument_imports(include=["tidings"]):
    from tidings.consumer.admission import Admission, Rejection, UnknownTypes
    from tidings.consumer.decoding import decode_delivery, signed_parts
    from tidings.consumer.items import Item
    from tidings.consumer.subscriptions import IntegrationSubscriptions
    from tidings.contracts.cloudevents import encode_binary, encode_structured
    from tidings.contracts.registry import default_registry
    from tidings.contracts.signing import KeyRing, SignatureCheck
    from tidings.contracts.upcasting import Upcasters
    from tidings.errors import ContractError
    from tidings.transports.base import Delivery

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.support import consumer_app
from tests.support.consumer_infra import price_changed

RING = KeyRing.parse("k1:ZnV6ei1rZXktMDEyMzQ1Njc4OWFiY2RlZg==")
PREFIXES = ["ce-", "ce_", "cloudEvents:"]
MAX_BYTES = 65_536

_basket = consumer_app.build_basket("sqlite://", "memory://fuzz", create=False)
_subscriptions = IntegrationSubscriptions(_basket.integration_handlers)
ADMISSIONS = [
    Admission(
        _subscriptions,
        Upcasters(),
        default_registry,
        max_message_bytes=MAX_BYTES,
        unknown_types=UnknownTypes.DEAD_LETTER,
        signatures=signatures,
    )
    for signatures in (None, SignatureCheck(RING, "required"), SignatureCheck(RING, "optional"))
]


# A valid signed event, whose attributes and payload the "mutated" mode changes one by one,
# so that inputs get past decoding into the signature, type and contract checks.
_VALID = RING.sign(price_changed("product-1", 1))
_VALID_HEADERS, _VALID_BODY = encode_binary(_VALID, prefix="cloudEvents:")
_VALID_DATA = {"product_id": "product-1", "price": "1", "seq": 1}
MUTATED = len(PREFIXES) + 1


def _fuzzed_value(fdp: Any) -> Any:
    kind = fdp.ConsumeIntInRange(0, 6)
    if kind == 0:
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 40))
    if kind == 1:
        return fdp.ConsumeInt(8)
    if kind == 2:
        return fdp.ConsumeRegularFloat()
    if kind == 3:
        return fdp.ConsumeBool()
    if kind == 4:
        return None
    if kind == 5:
        return [_fuzzed_value(fdp) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    return {fdp.ConsumeUnicode(4): _fuzzed_value(fdp) for _ in range(fdp.ConsumeIntInRange(0, 3))}


def mutated_delivery(fdp: Any) -> tuple[bytes, dict[str, Any]]:
    """The valid event with a few attributes, payload fields or bytes changed."""
    structured = fdp.ConsumeBool()
    document: dict[str, Any] = {**_VALID.attributes(), "data": dict(_VALID_DATA)}
    names = [*document, *_VALID_DATA, "extra"]
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        name = names[fdp.ConsumeIntInRange(0, len(names) - 1)]
        target = (
            document["data"]
            if name in _VALID_DATA and isinstance(document.get("data"), dict)
            else document
        )
        if fdp.ConsumeIntInRange(0, 4) == 0:
            target.pop(name, None)
        else:
            target[name] = _fuzzed_value(fdp)
    if structured:
        try:
            body = json.dumps(document, ensure_ascii=fdp.ConsumeBool()).encode(
                "utf-8", "surrogatepass"
            )
        except (TypeError, ValueError):
            body = fdp.ConsumeBytes(64)
        return body, {}
    headers: dict[str, Any] = dict(_VALID_HEADERS)
    for name, value in document.items():
        if name != "data":
            headers[f"cloudEvents:{name}"] = (
                value if not isinstance(value, list | dict) else str(value)
            )
    try:
        body = json.dumps(document.get("data")).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError):
        body = _VALID_BODY
    return body, headers


def delivery_of(data: bytes) -> tuple[bytes, dict[str, Any]]:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, MUTATED)
    if mode == MUTATED:
        return mutated_delivery(fdp)
    headers: dict[str, Any] = {}
    if mode < len(PREFIXES):
        prefix = PREFIXES[mode]
        for _ in range(fdp.ConsumeIntInRange(0, 12)):
            name = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 16))
            kind = fdp.ConsumeIntInRange(0, 3)
            value: Any
            if kind == 0:
                value = fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 80))
            elif kind == 1:
                value = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 80))
            elif kind == 2:
                value = fdp.ConsumeInt(4)
            else:
                value = None
            headers[prefix + name if fdp.ConsumeBool() else name] = value
        headers[f"{prefix}specversion"] = "1.0"
    return fdp.ConsumeBytes(fdp.remaining_bytes()), headers


def test_one_input(data: bytes) -> None:
    body, headers = delivery_of(data)
    for decode in (
        lambda: decode_delivery(body, headers, MAX_BYTES),
        lambda: signed_parts(body, headers),
    ):
        with contextlib.suppress(ContractError):  # DecodeError and kin: documented
            decode()
    for admission in ADMISSIONS:
        outcome = admission.admit(Delivery(body, headers))
        assert outcome is None or isinstance(outcome, Item | Rejection), outcome


def write_seeds(directory: Path) -> None:
    """Signed and unsigned valid events as fuzzer inputs: a structured envelope, and a
    binary-mode body whose headers the fuzzer finds by mutation."""
    directory.mkdir(parents=True, exist_ok=True)
    events = [RING.sign(price_changed("product-1", 1)), price_changed("product-2", 2)]
    for number, event in enumerate(events):
        mode = bytes([len(PREFIXES)])
        (directory / f"structured-{number}").write_bytes(mode + encode_structured(event))
        _, body = encode_binary(event)
        (directory / f"binary-{number}").write_bytes(b"\x00\x00" + body)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--seeds":
        write_seeds(Path(sys.argv[2]))
        return
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
