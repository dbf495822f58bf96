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
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Verdict = Literal["compatible", "breaking"]
Direction = Literal["backward", "forward"]
Schema = Mapping[str, Any]
_ANY: Schema = {}
_NOTHING: Schema = {"not": {}}
_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "boolean": bool,
    "null": type(None),
    "array": list,
    "dict": dict,
    "model": dict,
}


@dataclass(frozen=True)
class Change:
    """One difference between reader and writer at ``path``; ``rule`` names the kind."""

    path: str
    rule: str
    verdict: Verdict
    message: str


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
                        _compatible(
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
                    _breaking(
                        where,
                        absent_rule,
                        f"{self.readers} require {name!r} and {self.data} lacks it; {advice}",
                    )
                )
            else:
                changes.append(
                    _compatible(
                        where, absent_rule, f"{self.data} lacks {name!r}: readers take its default"
                    )
                )
        for name in writer_fields:
            if name in reader_fields:
                continue
            if reader.get("additionalProperties") is False:
                changes.append(
                    _breaking(
                        _join(path, name),
                        extra_rule,
                        f"{self.readers} forbid unknown fields and {self.data} has {name!r}",
                    )
                )
            else:
                changes.append(
                    _compatible(
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
        if any(_kind(r) == "any" for r in readers):
            return []
        changes: list[Change] = []
        reader_null = any(_kind(r) == "null" for r in readers)
        writer_null = any(_kind(w) == "null" for w in writers)
        if writer_null and not reader_null:
            changes.append(
                _breaking(path, "nullability", f"{self.data} may be null, {self.readers} refuse")
            )
        elif reader_null and not writer_null:
            changes.append(_compatible(path, "nullability", f"{self.readers} also accept null"))
        kinds = {_kind(w) for w in writers}
        reads_decimals = any(_kind(r) == "decimal" for r in readers)
        if reads_decimals and kinds & {"integer", "number"} and "decimal" not in kinds:
            changes.append(
                _compatible(path, "numeric-type", f"{self.readers} read numbers as decimals")
            )
        values = [r for r in readers if _kind(r) != "null"]
        for alternative in writers:
            if _kind(alternative) == "null":
                continue
            if not values:
                changes.append(
                    _breaking(path, "type", f"{self.readers} accept only null here, not data")
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
        reader_kind, writer_kind = _kind(reader), _kind(writer)
        if writer_kind == "enum":
            return self.enum_values(reader, _values(writer), path)
        if reader_kind == "enum":
            allowed = _shown(_values(reader))
            return [
                _breaking(
                    path, "enum", f"{self.readers} accept only {allowed}, {self.data} any value"
                )
            ]
        if writer_kind == "any":
            return [
                _breaking(
                    path, "type", f"{self.data} may be any value, {self.readers} need {reader_kind}"
                )
            ]
        if reader_kind == writer_kind:
            return self.same_kind(reader_kind, reader, writer, path)
        if (reader_kind, writer_kind) == ("number", "integer"):
            widened = _compatible(path, "numeric-type", f"{self.readers} read integers as numbers")
            return [widened, *_bounds(reader, writer, path, self.readers, integer=False)]
        if writer_kind in {"number", "decimal"} and reader_kind in {"integer", "number"}:
            shown = "decimal strings" if writer_kind == "decimal" else "fractional numbers"
            return [
                _breaking(
                    path,
                    "numeric-type",
                    f"{self.data} may hold {shown}, {self.readers} need {reader_kind}s (narrowing)",
                )
            ]
        if (reader_kind, writer_kind) == ("decimal", "string"):
            return [
                _breaking(
                    path, "format", f"{self.readers} require decimals, {self.data} any string"
                )
            ]
        if (reader_kind, writer_kind) == ("string", "decimal"):
            return self.same_kind("string", reader, {**writer, "format": "decimal"}, path)
        return [
            _breaking(
                path, "type", f"{self.data} holds {writer_kind}, {self.readers} need {reader_kind}"
            )
        ]

    def same_kind(self, kind: str, reader: Schema, writer: Schema, path: str) -> list[Change]:
        if kind == "string":
            return _string(reader, writer, path, self.readers)
        if kind in {"integer", "number"}:
            return _bounds(reader, writer, path, self.readers, integer=kind == "integer")
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
        changes = _range(
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
        if _kind(reader) == "enum":
            accepted = {_canonical(v) for v in _values(reader)}
            missing = [v for v in values if _canonical(v) not in accepted]
            if missing:
                return [
                    _breaking(
                        path,
                        "enum",
                        f"{self.data} may hold {_shown(missing)}, which {self.readers} refuse",
                    )
                ]
            if len(accepted) > len({_canonical(v) for v in values}):
                return [_compatible(path, "enum", f"{self.readers} accept more values")]
            return []
        refused = [v for v in values if not _fits(reader, v)]
        if refused:
            return [
                _breaking(path, "enum", f"{self.readers} refuse {_shown(refused)} of {self.data}")
            ]
        return [
            _compatible(
                path,
                "enum",
                f"{self.readers} accept any {_kind(reader)}, not only {_shown(values)}",
            )
        ]


def _item(array: Schema, position: int, side: int, comparison: _Comparison) -> Schema:
    prefix = array.get("prefixItems", [])
    if position < len(prefix):
        return comparison.resolve(prefix[position], side)
    return comparison.resolve(array.get("items", True), side)


def _string(reader: Schema, writer: Schema, path: str, readers: str) -> list[Change]:
    changes = _range(
        "string-length", "characters", reader, writer, ("minLength", "maxLength"), path, readers
    )
    for keyword, rule in (("pattern", "string-pattern"), ("format", "format")):
        wanted, written = reader.get(keyword), writer.get(keyword)
        if wanted is not None and wanted != written:
            shown = "none" if written is None else repr(written)
            changes.append(
                _breaking(path, rule, f"{readers} require {keyword} {wanted!r}, data had {shown}")
            )
        elif wanted is None and written is not None:
            changes.append(_compatible(path, rule, f"{readers} no longer require {written!r}"))
    return changes


def _range(
    rule: str,
    unit: str,
    reader: Schema,
    writer: Schema,
    keywords: tuple[str, str],
    path: str,
    readers: str,
) -> list[Change]:
    low, high = keywords
    reader_low, writer_low = reader.get(low, 0), writer.get(low, 0)
    reader_high, writer_high = reader.get(high), writer.get(high)
    if (reader_low, reader_high) == (writer_low, writer_high):
        return []
    fits = writer_low >= reader_low and (
        reader_high is None or (writer_high is not None and writer_high <= reader_high)
    )
    span = (
        f"at least {reader_low} {unit}"
        if reader_high is None
        else f"{reader_low} to {reader_high} {unit}"
    )
    if fits:
        return [_compatible(path, rule, f"{readers} accept {span}, a wider range")]
    return [_breaking(path, rule, f"{readers} accept only {span}, which data may exceed")]


Bound = tuple[float, bool] | None  # (value, exclusive)


def _bounds(
    reader: Schema, writer: Schema, path: str, readers: str, *, integer: bool
) -> list[Change]:
    keys = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "multipleOf")
    if all(reader.get(k) == writer.get(k) for k in keys):
        return []
    low_ok = _within(_lower(reader, integer), _lower(writer, integer), 1)
    high_ok = _within(_upper(reader, integer), _upper(writer, integer), -1)
    step, written_step = reader.get("multipleOf"), writer.get("multipleOf")
    step_ok = step is None or (
        written_step is not None and math.isclose(written_step / step, round(written_step / step))
    )
    shown = ", ".join(f"{k} {reader[k]}" for k in keys if k in reader) or "no bounds"
    if low_ok and high_ok and step_ok:
        return [_compatible(path, "numeric-bounds", f"{readers} accept a wider range ({shown})")]
    return [_breaking(path, "numeric-bounds", f"{readers} accept only {shown}, data may not fit")]


def _lower(schema: Schema, integer: bool) -> Bound:
    if "exclusiveMinimum" in schema:
        value = schema["exclusiveMinimum"]
        return (math.floor(value) + 1, False) if integer else (value, True)
    if "minimum" in schema:
        return (math.ceil(schema["minimum"]), False) if integer else (schema["minimum"], False)
    return None


def _upper(schema: Schema, integer: bool) -> Bound:
    if "exclusiveMaximum" in schema:
        value = schema["exclusiveMaximum"]
        return (math.ceil(value) - 1, False) if integer else (value, True)
    if "maximum" in schema:
        return (math.floor(schema["maximum"]), False) if integer else (schema["maximum"], False)
    return None


def _within(reader: Bound, writer: Bound, sign: int) -> bool:
    """Is the writer's bound at least as tight as the reader's (sign 1: lower, -1: upper)?"""
    if reader is None:
        return True
    if writer is None:
        return False
    (wanted, wanted_exclusive), (written, written_exclusive) = reader, writer
    if written * sign > wanted * sign:
        return True
    return written == wanted and (written_exclusive or not wanted_exclusive)


def _kind(schema: Schema) -> str:
    if "enum" in schema or "const" in schema:
        return "enum"
    kind = schema.get("type")
    if kind == "string":
        return "decimal" if schema.get("format") == "decimal" else "string"
    if kind == "object":
        return "model" if "properties" in schema else "dict"
    if isinstance(kind, str):
        return kind
    if "not" in schema:
        return "nothing"
    return "any"


def _values(schema: Schema) -> list[Any]:
    return [schema["const"]] if "const" in schema else list(schema["enum"])


def _fits(schema: Schema, value: Any) -> bool:
    """Does one JSON value meet a (non-enum) schema's type and string/number constraints?"""
    kind = _kind(schema)
    if kind == "any":
        return True
    if kind in {"string", "decimal"}:
        if not isinstance(value, str):
            return False
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", math.inf):
            return False
        pattern = schema.get("pattern")
        return pattern is None or re.search(pattern, value) is not None
    if kind in {"integer", "number"}:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if kind == "integer" and not float(value).is_integer():
            return False
        low, high = _lower(schema, False), _upper(schema, False)
        return _within(low, (value, False), 1) and _within(high, (value, False), -1)
    return isinstance(value, _JSON_TYPES.get(kind, ()))


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


def _breaking(path: str, rule: str, message: str) -> Change:
    return Change(path, rule, "breaking", message)


def _compatible(path: str, rule: str, message: str) -> Change:
    return Change(path, rule, "compatible", message)
