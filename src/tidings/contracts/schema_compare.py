"""Does a reader's schema accept everything a writer's schema allows? Change by change.

The comparison walks a reader schema and a writer schema of one contract (JSON Schema as
:mod:`tidings.contracts.schema` exports it) and returns a :class:`Change` for every
difference, compatible or breaking, at its field path (``lines[].quantity``,
``prices{}``, ``pair[0]``). A reader is compatible when it accepts a superset of what the
writer can produce: writers write every field, readers ignore unknown fields, and a field
missing from the data takes the reader's default (without one, the data is invalid).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from tidings.contracts.schema_constraints import (
    Change,
    Direction,
    Schema,
    Verdict,
    bound_changes,
    breaking,
    compatible,
    fits,
    kind_of,
    range_changes,
    string_changes,
)

__all__ = ["Change", "Direction", "Verdict", "compare"]

_ANY: Schema = {}
_NOTHING: Schema = {"not": {}}


def compare(reader: Schema, writer: Schema, direction: Direction) -> list[Change]:
    """The changes that matter when ``reader`` reads data written under ``writer``.

    ``direction`` says which side is new: ``backward`` (the reader is the new schema) or
    ``forward`` (the reader is the old one); it decides how changes are named.
    """
    return _Comparison(reader, writer, direction).model(reader, writer, "")


class _Comparison:
    def __init__(self, reader_root: Schema, writer_root: Schema, direction: Direction) -> None:
        self.roots = (reader_root, writer_root)
        self.direction = direction
        self.readers = "new readers" if direction == "backward" else "old readers"
        self.data = "old data" if direction == "backward" else "new data"
        self.seen: set[tuple[int, int]] = set()

    # -- objects ---------------------------------------------------------------------

    def model(self, reader: Schema, writer: Schema, path: str) -> list[Change]:
        pair = (id(reader), id(writer))
        if pair in self.seen:  # a recursive model, being compared further up the path
            return []
        self.seen.add(pair)
        try:
            return self.fields(reader, writer, path)
        finally:
            self.seen.discard(pair)

    def fields(self, reader: Schema, writer: Schema, path: str) -> list[Change]:
        changes: list[Change] = []
        reader_fields: Mapping[str, Schema] = reader.get("properties", {})
        writer_fields: Mapping[str, Schema] = writer.get("properties", {})
        required = set(reader.get("required", ()))
        # The reader has a field the writer does not write: added (backward) or removed.
        absent_rule = "field-added" if self.direction == "backward" else "field-removed"
        extra_rule = "field-removed" if self.direction == "backward" else "field-added"
        for name, field_schema in reader_fields.items():
            where = _join(path, name)
            if name in writer_fields:
                changes += self.node(field_schema, writer_fields[name], where)
                if _default(field_schema) != _default(writer_fields[name]):
                    changes.append(
                        compatible(
                            where,
                            "default",
                            "writers write every field, so a default only fills data "
                            "that lacks the field",
                        )
                    )
            elif name in required:
                advice = (
                    f"give {name!r} a default"
                    if self.direction == "backward"
                    else f"keep writing {name!r} (deprecate it, do not remove it)"
                )
                changes.append(
                    breaking(
                        where,
                        absent_rule,
                        f"{self.readers} require {name!r} and {self.data} lacks it; {advice}",
                    )
                )
            else:
                changes.append(
                    compatible(
                        where, absent_rule, f"{self.data} lacks {name!r}: readers take its default"
                    )
                )
        for name in writer_fields:
            if name in reader_fields:
                continue
            if reader.get("additionalProperties") is False:
                changes.append(
                    breaking(
                        _join(path, name),
                        extra_rule,
                        f"{self.readers} forbid unknown fields and {self.data} has {name!r}",
                    )
                )
            else:
                changes.append(
                    compatible(
                        _join(path, name),
                        extra_rule,
                        f"{self.readers} ignore {name!r}, which {self.data} carries",
                    )
                )
        return changes

    # -- any node: unions, nullability -----------------------------------------------

    def node(self, reader: Schema, writer: Schema, path: str) -> list[Change]:
        readers = self.alternatives(reader, 0)
        writers = self.alternatives(writer, 1)
        if any(kind_of(r) == "any" for r in readers):
            return []
        changes: list[Change] = []
        reader_null = any(kind_of(r) == "null" for r in readers)
        writer_null = any(kind_of(w) == "null" for w in writers)
        if writer_null and not reader_null:
            changes.append(
                breaking(path, "nullability", f"{self.data} may be null, {self.readers} refuse")
            )
        elif reader_null and not writer_null:
            changes.append(compatible(path, "nullability", f"{self.readers} also accept null"))
        kinds = {kind_of(w) for w in writers}
        reads_decimals = any(kind_of(r) == "decimal" for r in readers)
        if reads_decimals and kinds & {"integer", "number"} and "decimal" not in kinds:
            changes.append(
                compatible(path, "numeric-type", f"{self.readers} read numbers as decimals")
            )
        values = [r for r in readers if kind_of(r) != "null"]
        for alternative in writers:
            if kind_of(alternative) == "null":
                continue
            if not values:
                changes.append(
                    breaking(path, "type", f"{self.readers} accept only null here, not data")
                )
                continue
            candidates: list[list[Change]] = [
                self.alternative(r, alternative, path) for r in values
            ]
            best: list[Change] = min(candidates, key=_preference)
            changes.extend(best)
        return _unique(changes)

    def alternatives(self, schema: Schema, side: int) -> list[Schema]:
        schema = self.resolve(schema, side)
        for keyword in ("anyOf", "oneOf"):
            if keyword in schema:
                return [
                    alt for option in schema[keyword] for alt in self.alternatives(option, side)
                ]
        if len(schema.get("allOf", ())) == 1:
            return self.alternatives(schema["allOf"][0], side)
        kind = schema.get("type")
        if isinstance(kind, list) and "enum" not in schema and "const" not in schema:
            return [{**schema, "type": each} for each in kind]
        return [schema]

    def resolve(self, schema: Schema | bool, side: int) -> Schema:
        node: Any = schema
        for _ in range(64):  # a chain of references, never a cycle of bare references
            if node is True or not isinstance(node, Mapping):
                return _ANY if node is True else _NOTHING
            reference = node.get("$ref")
            if not isinstance(reference, str) or not reference.startswith("#/"):
                return node
            node = self.roots[side]
            for part in reference[2:].split("/"):
                node = node.get(part, {}) if isinstance(node, Mapping) else {}
        return _ANY

    # -- one reader alternative against one writer alternative -----------------------

    def alternative(self, reader: Schema, writer: Schema, path: str) -> list[Change]:
        reader_kind, writer_kind = kind_of(reader), kind_of(writer)
        if writer_kind == "enum":
            return self.enum_values(reader, _values(writer), path)
        if reader_kind == "enum":
            allowed = _shown(_values(reader))
            return [
                breaking(
                    path, "enum", f"{self.readers} accept only {allowed}, {self.data} any value"
                )
            ]
        if writer_kind == "any":
            return [
                breaking(
                    path, "type", f"{self.data} may be any value, {self.readers} need {reader_kind}"
                )
            ]
        if reader_kind == writer_kind:
            return self.samekind(reader_kind, reader, writer, path)
        if (reader_kind, writer_kind) == ("number", "integer"):
            widened = compatible(path, "numeric-type", f"{self.readers} read integers as numbers")
            return [widened, *bound_changes(reader, writer, path, self.readers, integer=False)]
        if writer_kind in {"number", "decimal"} and reader_kind in {"integer", "number"}:
            shown = "decimal strings" if writer_kind == "decimal" else "fractional numbers"
            return [
                breaking(
                    path,
                    "numeric-type",
                    f"{self.data} may hold {shown}, {self.readers} need {reader_kind}s (narrowing)",
                )
            ]
        if (reader_kind, writer_kind) == ("decimal", "string"):
            return [
                breaking(path, "format", f"{self.readers} require decimals, {self.data} any string")
            ]
        if (reader_kind, writer_kind) == ("string", "decimal"):
            return self.samekind("string", reader, {**writer, "format": "decimal"}, path)
        return [
            breaking(
                path, "type", f"{self.data} holds {writer_kind}, {self.readers} need {reader_kind}"
            )
        ]

    def samekind(self, kind: str, reader: Schema, writer: Schema, path: str) -> list[Change]:
        if kind == "string":
            return string_changes(reader, writer, path, self.readers)
        if kind in {"integer", "number"}:
            return bound_changes(reader, writer, path, self.readers, integer=kind == "integer")
        if kind == "array":
            return self.array(reader, writer, path)
        if kind == "dict":
            reader_values = reader.get("additionalProperties", True)
            writer_values = writer.get("additionalProperties", True)
            return self.node(
                self.resolve(reader_values, 0), self.resolve(writer_values, 1), path + "{}"
            )
        if kind == "model":
            return self.model(reader, writer, path)
        return []  # boolean, decimal: nothing more to compare

    def array(self, reader: Schema, writer: Schema, path: str) -> list[Change]:
        changes = range_changes(
            "array-length", "items", reader, writer, ("minItems", "maxItems"), path, self.readers
        )
        reader_prefix = reader.get("prefixItems", [])
        writer_prefix = writer.get("prefixItems", [])
        for position in range(max(len(reader_prefix), len(writer_prefix))):
            changes += self.node(
                _item(reader, position, 0, self),
                _item(writer, position, 1, self),
                f"{path}[{position}]",
            )
        writer_rest = writer.get("maxItems") is None or writer["maxItems"] > len(writer_prefix)
        if writer_rest and ("items" in reader or "items" in writer):
            changes += self.node(
                self.resolve(reader.get("items", True), 0),
                self.resolve(writer.get("items", True), 1),
                path + "[]",
            )
        return changes

    def enum_values(self, reader: Schema, values: list[Any], path: str) -> list[Change]:
        if kind_of(reader) == "enum":
            accepted = {_canonical(v) for v in _values(reader)}
            missing = [v for v in values if _canonical(v) not in accepted]
            if missing:
                return [
                    breaking(
                        path,
                        "enum",
                        f"{self.data} may hold {_shown(missing)}, which {self.readers} refuse",
                    )
                ]
            if len(accepted) > len({_canonical(v) for v in values}):
                return [compatible(path, "enum", f"{self.readers} accept more values")]
            return []
        refused = [v for v in values if not fits(reader, v)]
        if refused:
            return [
                breaking(path, "enum", f"{self.readers} refuse {_shown(refused)} of {self.data}")
            ]
        return [
            compatible(
                path,
                "enum",
                f"{self.readers} accept any {kind_of(reader)}, not only {_shown(values)}",
            )
        ]


def _item(array: Schema, position: int, side: int, comparison: _Comparison) -> Schema:
    prefix = array.get("prefixItems", [])
    if position < len(prefix):
        return comparison.resolve(prefix[position], side)
    return comparison.resolve(array.get("items", True), side)


def _values(schema: Schema) -> list[Any]:
    return [schema["const"]] if "const" in schema else list(schema["enum"])


def _default(schema: Schema) -> str | None:
    return _canonical(schema["default"]) if "default" in schema else None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _shown(values: Sequence[Any]) -> str:
    return ", ".join(json.dumps(v) for v in values)


def _preference(changes: list[Change]) -> tuple[bool, bool, int]:
    """The reader alternative that explains a writer alternative best: no break, then a
    reader of the same kind (a constraint differs, not the type), then fewest changes."""
    breaking = any(change.verdict == "breaking" for change in changes)
    return breaking, any(change.rule == "type" for change in changes), len(changes)


def _unique(changes: list[Change]) -> list[Change]:
    return list(dict.fromkeys(changes))
