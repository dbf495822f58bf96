"""Constraint comparisons of one reader and one writer schema node, and the Change record.

Each function answers whether every value the writer's constraints allow also meets the
reader's: string lengths, patterns and formats, numeric bounds and ``multipleOf``, list
lengths; :func:`kind_of` names what a node holds (``model``, ``dict``, ``decimal``,
``enum``, a JSON type, ``any``); :func:`fits` checks one JSON value against a node (for
``Literal`` values).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Verdict = Literal["compatible", "breaking"]
Direction = Literal["backward", "forward"]
Schema = Mapping[str, Any]
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


def breaking(path: str, rule: str, message: str) -> Change:
    return Change(path, rule, "breaking", message)


def compatible(path: str, rule: str, message: str) -> Change:
    return Change(path, rule, "compatible", message)


def string_changes(reader: Schema, writer: Schema, path: str, readers: str) -> list[Change]:
    changes = range_changes(
        "string-length", "characters", reader, writer, ("minLength", "maxLength"), path, readers
    )
    for keyword, rule in (("pattern", "string-pattern"), ("format", "format")):
        wanted, written = reader.get(keyword), writer.get(keyword)
        if wanted is not None and wanted != written:
            shown = "none" if written is None else repr(written)
            changes.append(
                breaking(path, rule, f"{readers} require {keyword} {wanted!r}, data had {shown}")
            )
        elif wanted is None and written is not None:
            changes.append(compatible(path, rule, f"{readers} no longer require {written!r}"))
    return changes


def range_changes(
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
        return [compatible(path, rule, f"{readers} accept {span}, a wider range")]
    return [breaking(path, rule, f"{readers} accept only {span}, which data may exceed")]


Bound = tuple[float, bool] | None  # (value, exclusive)


def bound_changes(
    reader: Schema, writer: Schema, path: str, readers: str, *, integer: bool
) -> list[Change]:
    keys = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "multipleOf")
    if all(reader.get(k) == writer.get(k) for k in keys):
        return []
    low_ok = within(lower(reader, integer), lower(writer, integer), 1)
    high_ok = within(upper(reader, integer), upper(writer, integer), -1)
    step, written_step = reader.get("multipleOf"), writer.get("multipleOf")
    step_ok = step is None or (
        written_step is not None and math.isclose(written_step / step, round(written_step / step))
    )
    shown = ", ".join(f"{k} {reader[k]}" for k in keys if k in reader) or "no bounds"
    if low_ok and high_ok and step_ok:
        return [compatible(path, "numeric-bounds", f"{readers} accept a wider range ({shown})")]
    return [breaking(path, "numeric-bounds", f"{readers} accept only {shown}, data may not fit")]


def lower(schema: Schema, integer: bool) -> Bound:
    if "exclusiveMinimum" in schema:
        value = schema["exclusiveMinimum"]
        return (math.floor(value) + 1, False) if integer else (value, True)
    if "minimum" in schema:
        return (math.ceil(schema["minimum"]), False) if integer else (schema["minimum"], False)
    return None


def upper(schema: Schema, integer: bool) -> Bound:
    if "exclusiveMaximum" in schema:
        value = schema["exclusiveMaximum"]
        return (math.ceil(value) - 1, False) if integer else (value, True)
    if "maximum" in schema:
        return (math.floor(schema["maximum"]), False) if integer else (schema["maximum"], False)
    return None


def within(reader: Bound, writer: Bound, sign: int) -> bool:
    """Is the writer's bound at least as tight as the reader's (sign 1: lower, -1: upper)?"""
    if reader is None:
        return True
    if writer is None:
        return False
    (wanted, wanted_exclusive), (written, written_exclusive) = reader, writer
    if written * sign > wanted * sign:
        return True
    return written == wanted and (written_exclusive or not wanted_exclusive)


def kind_of(schema: Schema) -> str:
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


def fits(schema: Schema, value: Any) -> bool:
    """Does one JSON value meet a (non-enum) schema's type and string/number constraints?"""
    kind = kind_of(schema)
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
        low, high = lower(schema, False), upper(schema, False)
        return within(low, (value, False), 1) and within(high, (value, False), -1)
    return isinstance(value, _JSON_TYPES.get(kind, ()))
