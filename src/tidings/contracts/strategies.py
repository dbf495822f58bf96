"""Hypothesis strategies for the payloads a contract's JSON Schema allows.

Covers the schema language :mod:`tidings.contracts.schema` exports (pydantic's): ``$ref``
into ``$defs``, ``anyOf``/``oneOf``, ``const``/``enum``, the JSON types with their length,
pattern, bound and ``multipleOf`` constraints, ``prefixItems``/``items``, ``properties``
with ``required`` and ``additionalProperties``, and the formats ``uuid``, ``date-time``,
``date``, ``time``, ``email`` and ``decimal``. Needs the ``contracts`` extra (Hypothesis).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC
from typing import Any

from hypothesis import strategies as st

_MAX_DEPTH = 4  # past it, objects get only required fields and lists stay short
_JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
_JSON = st.recursive(
    _JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
_FORMATS: dict[str, st.SearchStrategy[str]] = {
    "uuid": st.uuids().map(str),
    "date-time": st.datetimes(timezones=st.just(UTC)).map(lambda moment: moment.isoformat()),
    "date": st.dates().map(lambda day: day.isoformat()),
    "time": st.times().map(lambda moment: moment.isoformat()),
    "email": st.emails(),
    "decimal": st.decimals(allow_nan=False, allow_infinity=False, places=4).map(str),
}


def payloads(schema: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid under ``schema`` (a contract schema gives payload dicts)."""
    return _Generator(schema).node(schema, 0)


class _Generator:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root

    def node(self, schema: Any, depth: int) -> st.SearchStrategy[Any]:
        schema = self.resolve(schema)
        if schema is True or schema == {}:
            return _JSON
        if schema is False or not isinstance(schema, Mapping):
            return st.nothing()
        for keyword in ("anyOf", "oneOf"):
            if keyword in schema:
                return st.one_of([self.node(option, depth) for option in schema[keyword]])
        if len(schema.get("allOf", ())) == 1:
            return self.node(schema["allOf"][0], depth)
        if "const" in schema:
            return st.just(schema["const"])
        if "enum" in schema:
            return st.sampled_from(list(schema["enum"]))
        kind = schema.get("type")
        if isinstance(kind, list):
            return st.one_of([self.node({**schema, "type": each}, depth) for each in kind])
        return self.typed(kind, schema, depth)

    def typed(self, kind: Any, schema: Mapping[str, Any], depth: int) -> st.SearchStrategy[Any]:
        if kind == "null":
            return st.none()
        if kind == "boolean":
            return st.booleans()
        if kind == "integer":
            return _integers(schema)
        if kind == "number":
            return _numbers(schema)
        if kind == "string":
            return _strings(schema)
        if kind == "array":
            return self.array(schema, depth)
        if kind == "object":
            return self.object(schema, depth)
        return _JSON

    def array(self, schema: Mapping[str, Any], depth: int) -> st.SearchStrategy[Any]:
        low = schema.get("minItems", 0)
        high = schema.get("maxItems", low if depth >= _MAX_DEPTH else low + 4)
        prefix = [self.node(item, depth + 1) for item in schema.get("prefixItems", [])]
        if prefix:
            return st.tuples(*prefix).map(list)
        return st.lists(
            self.node(schema.get("items", True), depth + 1), min_size=low, max_size=high
        )

    def object(self, schema: Mapping[str, Any], depth: int) -> st.SearchStrategy[Any]:
        properties: Mapping[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", ()))
        if not properties:
            values = self.node(schema.get("additionalProperties", True), depth + 1)
            return st.dictionaries(st.text(max_size=8), values, max_size=3)
        fixed = {n: self.node(s, depth + 1) for n, s in properties.items() if n in required}
        optional = (
            {}
            if depth >= _MAX_DEPTH
            else {n: self.node(s, depth + 1) for n, s in properties.items() if n not in required}
        )
        return st.fixed_dictionaries(fixed, optional=optional)

    def resolve(self, schema: Any) -> Any:
        for _ in range(64):
            reference = schema.get("$ref") if isinstance(schema, Mapping) else None
            if not isinstance(reference, str) or not reference.startswith("#/"):
                return schema
            target: Any = self.root
            for part in reference[2:].split("/"):
                target = target.get(part, {}) if isinstance(target, Mapping) else {}
            schema = target
        return True


def _integers(schema: Mapping[str, Any]) -> st.SearchStrategy[int]:
    low = schema.get("minimum")
    high = schema.get("maximum")
    if "exclusiveMinimum" in schema:
        low = math.floor(schema["exclusiveMinimum"]) + 1
    if "exclusiveMaximum" in schema:
        high = math.ceil(schema["exclusiveMaximum"]) - 1
    low = None if low is None else math.ceil(low)
    high = None if high is None else math.floor(high)
    step = schema.get("multipleOf")
    if isinstance(step, int) and step > 0:
        return st.integers(
            None if low is None else -(-low // step), None if high is None else high // step
        ).map(lambda n: n * step)
    return st.integers(low, high)


def _numbers(schema: Mapping[str, Any]) -> st.SearchStrategy[float | int]:
    if "multipleOf" in schema:
        return _integers(schema)
    low = schema.get("exclusiveMinimum", schema.get("minimum"))
    high = schema.get("exclusiveMaximum", schema.get("maximum"))
    return st.floats(
        low,
        high,
        exclude_min="exclusiveMinimum" in schema,
        exclude_max="exclusiveMaximum" in schema,
        allow_nan=False,
        allow_infinity=False,
    )


def _strings(schema: Mapping[str, Any]) -> st.SearchStrategy[str]:
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    if schema.get("format") in _FORMATS:
        base = _FORMATS[schema["format"]]
    elif "pattern" in schema:
        # Python's "$" matches before a final newline, pydantic's (Rust) does not.
        base = st.from_regex(schema["pattern"]).filter(lambda text: not text.endswith("\n"))
    else:
        return st.text(min_size=low, max_size=high)
    return base.filter(lambda text: low <= len(text) <= (math.inf if high is None else high))
