"""Integration event contracts, their registry and the CloudEvents wire format."""

from tidings.contracts.cloudevents import (
    CloudEvent,
    decode_binary,
    decode_structured,
    encode_binary,
    encode_structured,
)
from tidings.contracts.envelope import cloud_event_from_row, outbox_row, to_contract
from tidings.contracts.integration_event import IntegrationEvent
from tidings.contracts.registry import ContractRegistry, default_registry
from tidings.contracts.signing import KeyRing, SignatureCheck, SigningKey, Verification

__all__ = [
    "CloudEvent",
    "ContractRegistry",
    "IntegrationEvent",
    "KeyRing",
    "SignatureCheck",
    "SigningKey",
    "Verification",
    "cloud_event_from_row",
    "decode_binary",
    "decode_structured",
    "default_registry",
    "encode_binary",
    "encode_structured",
    "outbox_row",
    "to_contract",
]
