"""Forged and tampered messages for the signed-events tests, each with the dead-letter
reason the consumer must give it.

The producer (catalog) signs with ``k1`` and, after a rotation, with ``k2``; the
consumer's key ring holds both (:data:`CONSUMER_KEYS`). An attacker who can write to the
broker sends what it can build without the secrets: unsigned events, events signed with
its own keys, signed events whose payload or attributes it changed, signatures copied onto
other events, and plain garbage.
"""

from __future__ import annotations

import base64
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tests.support.consumer_infra import price_changed
from tidings.contracts.cloudevents import CloudEvent, encode_binary, encode_structured
from tidings.contracts.signing import KeyRing


def _secret(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


K1 = f"k1:{_secret('catalog-key-one-0123456789')}"
K2 = f"k2:{_secret('catalog-key-two-0123456789')}"
#: the catalog's key ring before and after the rotation (newest first)
BEFORE_ROTATION = KeyRing.parse(K1)
AFTER_ROTATION = KeyRing.parse(f"{K2},{K1}")
#: the basket's key ring during the rotation: both keys verify
CONSUMER_KEYS = AFTER_ROTATION
_ATTACKER = KeyRing.parse(f"k9:{_secret('attacker-key-0123456789')}")
_ATTACKER_AS_K1 = KeyRing.parse(f"k1:{_secret('attacker-key-0123456789')}")


@dataclass(frozen=True)
class Forged:
    """One bad message as a transport would carry it, and why it must be refused."""

    body: bytes
    headers: dict[str, Any]
    reason: str
    kind: str


def _tampered_payload(event: CloudEvent) -> CloudEvent:
    signed = BEFORE_ROTATION.sign(event)
    return replace(signed, data_json=signed.data_json.replace(b'"price":"', b'"price":"9'))


def _tampered_attribute(event: CloudEvent) -> CloudEvent:
    return replace(AFTER_ROTATION.sign(event), subject="product-forged")


def _copied_signature(event: CloudEvent) -> CloudEvent:
    other = AFTER_ROTATION.sign(price_changed("product-0", 0))
    return event.with_extensions(sigkeyid="k2", signature=str(other.extensions["signature"]))


_FORGERIES: dict[str, Callable[[CloudEvent], CloudEvent]] = {
    "unsigned": lambda event: event,
    "unknown key": _ATTACKER.sign,
    "attacker secret under a real key id": _ATTACKER_AS_K1.sign,
    "tampered payload": _tampered_payload,
    "tampered attribute": _tampered_attribute,
    "signature copied from another event": _copied_signature,
    "not a signature": lambda event: event.with_extensions(sigkeyid="k1", signature="0" * 64),
    "no key id": lambda event: event.with_extensions(signature="0" * 64),
}


def forge(count: int, *, binary_prefix: str | None, seed: int = 0) -> list[Forged]:
    """``count`` bad messages: binary mode with ``binary_prefix``, else structured."""
    rng = random.Random(seed)
    kinds = [*_FORGERIES, "garbage"]
    forged: list[Forged] = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        if kind == "garbage":
            body = rng.randbytes(rng.randint(1, 60))
            forged.append(Forged(b"\x00" + body, {}, "undecodable", kind))
            continue
        event = _FORGERIES[kind](price_changed(f"product-{i % 20}", 10_000 + i))
        if binary_prefix is None:
            forged.append(Forged(encode_structured(event), {}, "bad_signature", kind))
        else:
            headers, body = encode_binary(event, prefix=binary_prefix)
            forged.append(Forged(body, dict(headers), "bad_signature", kind))
    return forged


def reasons(forged: Sequence[Forged]) -> Counter[str]:
    return Counter(message.reason for message in forged)
