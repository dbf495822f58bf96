"""From contract to stored row to CloudEvent, and back to a contract."""

from __future__ import annotations

import json
import zlib
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError

from tidings.contracts.cloud_event import CloudEvent, format_time
from tidings.contracts.integration_event import ENVELOPE_FIELDS, IntegrationEvent
from tidings.contracts.registry import ContractRegistry, default_registry
from tidings.errors import ContractValidationError, DecodeError

_EXCLUDED: set[str] = set(ENVELOPE_FIELDS)

#: Every outbox row stores ``crc32(partition key) % PARTITION_SLOTS``: fixed forever, so
#: the partition count of an outbox (P, any value from 1 to 4096) can change without
#: rewriting rows; the row belongs to relay partition ``slot % P``. Keys with one slot
#: always share a partition, whatever P, which is all per-key order needs.
PARTITION_SLOTS = 4096


def partition_slot(partition_key: str) -> int:
    """The slot of an outbox row with this partition key (crc32 of its UTF-8 bytes)."""
    return zlib.crc32(partition_key.encode()) % PARTITION_SLOTS


def outbox_row(
    event: IntegrationEvent,
    *,
    source: str,
    correlation_id: str | None,
    causation_id: str | None,
    created_at: datetime,
    partition_key: str | None = None,
    traceparent: str | None = None,
    tracestate: str | None = None,
    trigger_id: str | None = None,
) -> dict[str, Any]:
    """The outbox row of ``event``: column name to value, payload already JSON."""
    cls = type(event)
    key = partition_key if partition_key is not None else event.partition_key()
    return {
        "event_id": str(event.event_id),
        "event_type": cls.event_type,
        "event_version": cls.event_version,
        "source": source,
        "partition_key": key,
        "partition_slot": partition_slot(key),
        "payload": event.__pydantic_serializer__.to_json(event, exclude=_EXCLUDED).decode(),
        "occurred_at": event.occurred_at,
        "created_at": created_at,
        "correlation_id": correlation_id,
        "causation_id": causation_id,
        "traceparent": traceparent,
        "tracestate": tracestate,
        "trigger_id": trigger_id,
    }


class OutboxRow(Protocol):
    """An outbox row read by column name (a SQLAlchemy row mapping, an asyncpg record)."""

    def __getitem__(self, name: str, /) -> Any: ...


def cloud_event_from_row(row: OutboxRow) -> CloudEvent:
    """The CloudEvent a transport sends for one outbox row; the payload is not re-encoded."""
    payload = row["payload"]
    return CloudEvent.trusted(
        id=row["event_id"],
        source=row["source"],
        type=row["event_type"],
        dataversion=row["event_version"],
        time=format_time(row["occurred_at"]),
        subject=row["partition_key"],
        correlationid=row["correlation_id"],
        causationid=row["causation_id"],
        traceparent=row["traceparent"],
        tracestate=row["tracestate"],
        data_json=payload.encode() if isinstance(payload, str) else bytes(payload),
    )


def to_contract(
    event: CloudEvent, registry: ContractRegistry = default_registry
) -> IntegrationEvent:
    """The contract instance a CloudEvent carries.

    Raises :class:`~tidings.errors.UnknownContractError` for an unregistered (type,
    version) and :class:`~tidings.errors.ContractValidationError` for a payload that
    does not fit the contract. Unknown payload fields are ignored (tolerant reader).
    """
    contract = registry.resolve(event.type, event.dataversion)
    try:
        payload = json.loads(event.data_json)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"data is not JSON: {str(exc)[:200]}") from None
    if not isinstance(payload, dict):
        raise ContractValidationError(
            f"{contract.__name__} payload must be a JSON object, got {type(payload).__name__}"
        )
    payload["event_id"] = event.id
    if event.time is not None:
        payload["occurred_at"] = event.time
    try:
        return contract.model_validate(payload)
    except RecursionError:
        raise ContractValidationError(
            f"{event.type} v{event.dataversion} payload is nested too deeply"
        ) from None
    except OverflowError as exc:  # a valid date that leaves datetime's range in UTC
        raise ContractValidationError(
            f"{event.type} v{event.dataversion} payload does not fit {contract.__name__}: {exc}"
        ) from None
    except ValidationError as exc:
        raise ContractValidationError(
            f"{event.type} v{event.dataversion} payload does not fit {contract.__name__}: "
            f"{_summarise(exc)}"
        ) from exc


def _summarise(exc: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(p) for p in error['loc']) or '<root>'}: {error['msg']}"
        for error in exc.errors()[:5]
    ]
    more = exc.error_count() - len(problems)
    return "; ".join(problems) + (f" (+{more} more)" if more > 0 else "")
