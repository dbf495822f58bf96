"""Admission: from a delivery to a readable contract, or the reason it cannot be handled.

Bad input never reaches a handler. A delivery is admitted as an :class:`Item`, rejected
with a dead-letter reason, or passed over: ``None``.

The rule for a type the group does not handle depends on the transport. A broker that
routes by type (RabbitMQ, NATS, Pub/Sub, memory) should never deliver one: it is a misrouting,
dead-lettered as ``unknown_type``. A shared log (SQLite file, Redis, Kafka) carries every
context's types, and its transport passes over the others by their routing metadata
before anything is decoded; one without routing metadata is passed over here (None).
A message whose routing metadata names another type than its CloudEvent (on a shared
log: a type the group handles, on a body of another type) is dead-lettered as
``routing_mismatch``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from enum import StrEnum

from tidings.consumer.dead_letters import DeadLetterReason
from tidings.consumer.decoding import decode_delivery, signed_parts
from tidings.consumer.items import Item
from tidings.consumer.subscriptions import IntegrationSubscriptions
from tidings.contracts.cloud_event import CloudEvent
from tidings.contracts.envelope import to_contract
from tidings.contracts.integration_event import IntegrationEvent
from tidings.contracts.registry import ContractRegistry
from tidings.contracts.signing import SignatureCheck
from tidings.contracts.upcasting import Upcasters
from tidings.errors import (
    ContractValidationError,
    DecodeError,
    LimitExceededError,
    MessageTooLargeError,
    RoutingMismatchError,
    SignatureError,
    UnhandledTypeError,
    UnknownContractError,
)
from tidings.transports.base import Delivery


class UnknownTypes(StrEnum):
    """What to do with a message whose (type, version) no handler can read."""

    DEAD_LETTER = "dead_letter"
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a delivery cannot be handled: it goes to the dead letters with ``reason``."""

    reason: DeadLetterReason
    error: BaseException
    event: CloudEvent | None


_MAX_ID_LENGTH = 200  # the width of the id columns of the inbox, outbox and dead letters


class Admission:
    """Decodes and validates deliveries for one consumer group."""

    def __init__(
        self,
        subscriptions: IntegrationSubscriptions,
        upcasters: Upcasters,
        registry: ContractRegistry,
        *,
        max_message_bytes: int,
        unknown_types: UnknownTypes,
        routes_by_type: bool = True,
        signatures: SignatureCheck | None = None,
    ) -> None:
        self.subscriptions = subscriptions
        self.upcasters = upcasters
        self.registry = registry
        self.max_message_bytes = max_message_bytes
        self.unknown_types = unknown_types
        self.routes_by_type = routes_by_type
        self.signatures = signatures if signatures is not None and signatures.active else None

    def admit(self, delivery: Delivery) -> Item | Rejection | None:
        """The delivery as an item to handle, a rejection, or None: not for this group."""
        event: CloudEvent | None = None
        try:
            if len(delivery.body) > self.max_message_bytes:
                raise MessageTooLargeError(
                    f"message of {len(delivery.body)} bytes exceeds the "
                    f"{self.max_message_bytes}-byte limit"
                )
            attributes = self.verify(delivery)
            event = decode_delivery(
                delivery.body, delivery.headers, self.max_message_bytes, attributes=attributes
            )
            _check_lengths(event)
            routed = delivery.routed_type
            if event.type not in self.subscriptions.versions:
                if self.routes_by_type:
                    raise UnhandledTypeError(event.type, self.subscriptions.event_types)
                if routed is None:
                    return None  # a shared log without routing metadata: not ours
                # The transport let it through by a type the group handles.
                return self._mismatch(routed, event)
            if routed is not None and routed != event.type:
                return self._mismatch(routed, event)
            contract = self.read_contract(event)
        except SignatureError as error:
            return Rejection(DeadLetterReason.BAD_SIGNATURE, error, event)
        except MessageTooLargeError as error:
            return Rejection(DeadLetterReason.TOO_LARGE, error, event)
        except LimitExceededError as error:
            return Rejection(DeadLetterReason.LIMIT_EXCEEDED, error, event)
        except (UnknownContractError, UnhandledTypeError) as error:
            if self.unknown_types is UnknownTypes.IGNORE:
                return None
            return Rejection(DeadLetterReason.UNKNOWN_TYPE, error, event)
        except ContractValidationError as error:
            return Rejection(DeadLetterReason.INVALID_PAYLOAD, error, event)
        except DecodeError as error:
            return Rejection(DeadLetterReason.UNDECODABLE, error, event)
        return Item(delivery, event, contract)

    @staticmethod
    def _mismatch(routed: str, event: CloudEvent) -> Rejection:
        error = RoutingMismatchError(routed, event.type)
        return Rejection(DeadLetterReason.ROUTING_MISMATCH, error, event)

    def verify(self, delivery: Delivery) -> dict[str, str] | None:
        """Check the signature of a delivery of a type this group handles, before its
        payload is decoded; raises :class:`SignatureError` (or :class:`DecodeError`).
        Returns the binary-mode attributes it read, for decoding (else None)."""
        if self.signatures is None:
            return None
        attributes, data, binary = signed_parts(delivery.body, delivery.headers)
        if attributes.get("type") in self.subscriptions.versions:
            self.signatures.check(attributes, data)
        return attributes if binary else None

    def read_contract(self, event: CloudEvent) -> IntegrationEvent:
        """The contract ``event`` carries, upcast to a version the handlers read."""
        wanted = self.subscriptions.versions[event.type]
        upcasters = self.upcasters
        if event.dataversion not in wanted and upcasters:
            try:
                payload = json.loads(event.data_json)
                if isinstance(payload, dict):
                    version, payload = upcasters.upcast(
                        event.type, event.dataversion, payload, wanted
                    )
                    data_json = json.dumps(payload).encode()
                    event = replace(event, dataversion=version, data_json=data_json)
            except Exception as error:
                # An upcaster meets whatever a producer sent: its failure is bad input.
                raise ContractValidationError(
                    f"{event.type} v{event.dataversion} payload cannot be upcast: {error!r}"
                ) from error
        if event.dataversion not in wanted:
            raise UnknownContractError(event.type, event.dataversion)
        return to_contract(event, self.registry)


def _check_lengths(event: CloudEvent) -> None:
    """Ids from other systems may be any length; ours are 36 characters."""
    for name in ("id", "correlationid", "causationid", "subject"):
        value = getattr(event, name)
        if value is not None and len(value) > _MAX_ID_LENGTH:
            raise DecodeError(
                f"attribute {name!r} is {len(value)} characters long; tidings stores at most "
                f"{_MAX_ID_LENGTH}"
            )
