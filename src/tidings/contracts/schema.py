"""JSON Schema (draft 2020-12) of integration event contracts, and snapshots of them.

A contract's schema describes its CloudEvents ``data``: the payload as tidings writes it
(``event_id`` and ``occurred_at`` travel in the envelope, so they are not in it). It is
pydantic's validation schema, so it also says what a reader accepts: a field with a
default is not ``required``, and unknown properties are allowed (readers ignore them).
A ``Decimal`` is ``{"anyOf": [number, string with format "decimal"]}``: tidings writes
it as a string and reads either.

A *snapshot* is a directory with one ``<type>.v<version>.json`` file per contract and an
``index.json``; :func:`export_snapshot` writes it byte-for-byte deterministically (keys
sorted, two-space indent, a final newline), so it can be committed and diffed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from tidings.contracts.integration_event import ENVELOPE_FIELDS, IntegrationEvent
from tidings.errors import ContractSnapshotError

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
INDEX_FILE = "index.json"
SNAPSHOT_FORMAT = 1
TYPE_KEY = "x-tidings-type"
VERSION_KEY = "x-tidings-version"
PARTITION_KEY = "x-tidings-partition-key"

ContractKey = tuple[str, int]
_UNSAFE_FILE_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]")


class _ContractJsonSchema(GenerateJsonSchema):
    """pydantic's generator, with decimals marked as such (``format: decimal``)."""

    def decimal_schema(self, schema: core_schema.DecimalSchema) -> JsonSchemaValue:
        return {"anyOf": [{"type": "number"}, {"type": "string", "format": "decimal"}]}


def contract_key(contract: type[IntegrationEvent]) -> ContractKey:
    """``(event_type, event_version)`` of a contract class."""
    return (contract.event_type, contract.event_version)


def payload_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of any pydantic model, generated the way contracts' are."""
    return model.model_json_schema(schema_generator=_ContractJsonSchema)


def contract_schema(contract: type[IntegrationEvent]) -> dict[str, Any]:
    """The draft 2020-12 JSON Schema of ``contract``'s payload, with tidings metadata.

    ``x-tidings-type`` and ``x-tidings-version`` name the contract and
    ``x-tidings-partition-key`` the field whose value is the partition key (``null``:
    the event id).
    """
    schema = payload_schema(contract)
    properties = schema.get("properties", {})
    for name in ENVELOPE_FIELDS:
        properties.pop(name, None)
    required = [name for name in schema.get("required", []) if name not in ENVELOPE_FIELDS]
    if required:
        schema["required"] = required
    else:
        schema.pop("required", None)
    schema["properties"] = properties
    schema["$schema"] = DRAFT_2020_12
    schema[TYPE_KEY] = contract.event_type
    schema[VERSION_KEY] = contract.event_version
    schema[PARTITION_KEY] = contract.__tidings_key_field__
    return schema


def describe_fields(schema: Mapping[str, Any]) -> dict[str, str]:
    """Each payload field with a short type (``list[OrderLine]``, ``string|null``)."""
    return {
        name: _describe(field_schema) for name, field_schema in schema.get("properties", {}).items()
    }


def _describe(node: Any) -> str:
    if not isinstance(node, Mapping):
        return "any"
    if "$ref" in node:
        return str(node["$ref"]).rsplit("/", 1)[-1]
    for keyword in ("anyOf", "oneOf"):
        if keyword in node:
            return "|".join(dict.fromkeys(_describe(option) for option in node[keyword]))
    if "const" in node:
        return json.dumps(node["const"])
    if "enum" in node:
        return "|".join(json.dumps(value) for value in node["enum"])
    kind = node.get("type", "any")
    if kind == "array":
        return f"list[{_describe(node.get('items', {}))}]"
    if kind == "object" and "additionalProperties" in node:
        return f"dict[{_describe(node['additionalProperties'])}]"
    return str(node["format"]) if "format" in node else str(kind)


def schema_file_name(event_type: str, version: int) -> str:
    """The snapshot file of one contract: ``catalog.product.updated.v1.json``."""
    return f"{_UNSAFE_FILE_CHARACTERS.sub('_', event_type)}.v{version}.json"


def dumps(document: Mapping[str, Any]) -> str:
    """The snapshot's canonical JSON text: sorted keys, two-space indent, final newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class Snapshot:
    """Contract schemas by ``(event_type, event_version)``, as exported or read back."""

    schemas: Mapping[ContractKey, Mapping[str, Any]]

    @classmethod
    def of(cls, contracts: Iterable[type[IntegrationEvent]]) -> Snapshot:
        """The snapshot of contract classes (what :func:`export_snapshot` would write)."""
        return cls({contract_key(c): contract_schema(c) for c in contracts})

    def index(self) -> dict[str, Any]:
        """The ``index.json`` document: one entry per contract, sorted by type, version."""
        entries = [
            {
                "file": schema_file_name(event_type, version),
                "partition_key": schema.get(PARTITION_KEY),
                "title": schema.get("title"),
                "type": event_type,
                "version": version,
            }
            for (event_type, version), schema in sorted(self.schemas.items())
        ]
        return {"contracts": entries, "format": SNAPSHOT_FORMAT, "generator": "tidings"}

    def files(self) -> dict[str, str]:
        """File name to text of every file of the snapshot, the index included."""
        texts = {
            schema_file_name(event_type, version): dumps(schema)
            for (event_type, version), schema in self.schemas.items()
        }
        texts[INDEX_FILE] = dumps(self.index())
        return texts


def export_snapshot(contracts: Iterable[type[IntegrationEvent]], out: Path | str) -> list[Path]:
    """Write the schema of each contract and ``index.json`` to ``out``; return the paths.

    Files of contracts that an earlier export listed in the index but that are no longer
    given are removed, so the directory is exactly the snapshot of ``contracts``.
    """
    directory = Path(out)
    if directory.exists() and not directory.is_dir():
        raise ContractSnapshotError(f"{directory} is a file; give --out a directory")
    stale = _indexed_files(directory) if (directory / INDEX_FILE).is_file() else set()
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, text in sorted(Snapshot.of(contracts).files().items()):
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
        stale.discard(name)
    for name in stale:
        (directory / name).unlink(missing_ok=True)
    return written


def read_snapshot(directory: Path | str) -> Snapshot:
    """Read a snapshot written by :func:`export_snapshot`.

    Raises :class:`~tidings.errors.ContractSnapshotError` when the directory, its index or
    a listed schema is missing or unreadable.
    """
    root = Path(directory)
    index = _read_json(root / INDEX_FILE, "run `tidings contracts export TARGET --out DIR`")
    entries = index.get("contracts") if isinstance(index, dict) else None
    if not isinstance(entries, list):
        raise ContractSnapshotError(f"{root / INDEX_FILE} has no 'contracts' list; export again")
    schemas: dict[ContractKey, Mapping[str, Any]] = {}
    for entry in entries:
        try:
            key = (str(entry["type"]), int(entry["version"]))
            file_name = str(entry["file"])
        except (KeyError, TypeError, ValueError):
            raise ContractSnapshotError(
                f"{root / INDEX_FILE} has an entry without type, version and file: {entry!r}"
            ) from None
        schema = _read_json(root / file_name, "export the snapshot again")
        if not isinstance(schema, dict):
            raise ContractSnapshotError(f"{root / file_name} is not a JSON Schema object")
        schemas[key] = schema
    return Snapshot(schemas)


def _indexed_files(directory: Path) -> set[str]:
    """Files an earlier export listed (unreadable index: none, so nothing is removed)."""
    try:
        index = _read_json(directory / INDEX_FILE, "")
    except ContractSnapshotError:
        return set()
    entries = index.get("contracts", []) if isinstance(index, dict) else []
    return {
        entry["file"]
        for entry in entries
        if isinstance(entry, dict) and _is_plain_file_name(entry.get("file"))
    }


def _is_plain_file_name(name: object) -> bool:
    """A name inside the snapshot directory (an index never makes export delete elsewhere)."""
    return isinstance(name, str) and name.endswith(".json") and Path(name).name == name


def _read_json(path: Path, advice: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ContractSnapshotError(f"{path} does not exist; {advice}") from None
    except (OSError, ValueError) as exc:
        raise ContractSnapshotError(f"{path} cannot be read as JSON ({exc}); {advice}") from None
