"""Integration event contracts, their registry and the CloudEvents wire format."""

from tidings.contracts.catalog import ContractCatalog, ContractEntry, RegisteredUpcaster
from tidings.contracts.cloud_event import CloudEvent
from tidings.contracts.cloudevents import (
    decode_binary,
    decode_structured,
    encode_binary,
    encode_structured,
)
from tidings.contracts.compatibility import (
    MODES,
    CompatibilityReport,
    Finding,
    check_compatibility,
    compare_schemas,
)
from tidings.contracts.envelope import cloud_event_from_row, outbox_row, to_contract
from tidings.contracts.integration_event import IntegrationEvent
from tidings.contracts.registry import ContractRegistry, default_registry
from tidings.contracts.schema import (
    Snapshot,
    contract_schema,
    export_snapshot,
    payload_schema,
    read_snapshot,
)
from tidings.contracts.signing import KeyRing, SignatureCheck, SigningKey, Verification

__all__ = [
    "MODES",
    "CloudEvent",
    "CompatibilityReport",
    "ContractCatalog",
    "ContractEntry",
    "ContractRegistry",
    "Finding",
    "IntegrationEvent",
    "KeyRing",
    "RegisteredUpcaster",
    "SignatureCheck",
    "SigningKey",
    "Snapshot",
    "Verification",
    "check_compatibility",
    "cloud_event_from_row",
    "compare_schemas",
    "contract_schema",
    "decode_binary",
    "decode_structured",
    "default_registry",
    "encode_binary",
    "encode_structured",
    "export_snapshot",
    "outbox_row",
    "payload_schema",
    "read_snapshot",
    "to_contract",
]
