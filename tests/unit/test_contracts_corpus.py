"""The compatibility corpus: change pairs (old model, new model) with the expected verdict
in each mode, covering every rule of docs/contracts.md in both directions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

import pytest
from pydantic import BaseModel, ConfigDict, Field, create_model

from tidings.contracts import compare_schemas, payload_schema


def model(**fields: Any) -> type[BaseModel]:
    """A payload model from ``name=(type, default)`` or ``name=type`` (required)."""
    spec = {
        name: value if isinstance(value, tuple) else (value, ...) for name, value in fields.items()
    }
    return create_model("Payload", **spec)  # type: ignore[call-overload, no-any-return]


class Line(BaseModel):
    sku: str
    quantity: int


class LineWithNote(BaseModel):
    sku: str
    quantity: int
    note: str = ""


class LineWithRequiredNote(BaseModel):
    sku: str
    quantity: int
    note: str


class LineFloatQuantity(BaseModel):
    sku: str
    quantity: float


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str


class StrictWithQuantity(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str
    quantity: int = 0


@dataclass(frozen=True)
class Case:
    name: str
    old: type[BaseModel]
    new: type[BaseModel]
    backward: bool  # new readers read old data
    forward: bool  # old readers read new data
    rule: str  # the rule that must classify the change


Short = Annotated[str, Field(max_length=10)]
Shorter = Annotated[str, Field(max_length=5)]
NonEmpty = Annotated[str, Field(min_length=1)]
Sku = Annotated[str, Field(pattern=r"^[A-Z]{3}-\d+$")]
OtherSku = Annotated[str, Field(pattern=r"^[a-z]+$")]
Positive = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
Small = Annotated[int, Field(le=100)]
Tiny = Annotated[int, Field(lt=10)]
Below10 = Annotated[int, Field(le=9)]
Even = Annotated[int, Field(multiple_of=2)]
Fourfold = Annotated[int, Field(multiple_of=4)]
Ratio = Annotated[float, Field(ge=0, le=1)]
OpenRatio = Annotated[float, Field(gt=0, lt=1)]
AtMostThree = Annotated[list[str], Field(max_length=3)]
AtLeastOne = Annotated[list[str], Field(min_length=1)]

CORPUS = [
    # fields added and removed
    Case("add optional field", model(a=str), model(a=str, b=(int, 0)), True, True, "field-added"),
    Case(
        "add nullable field",
        model(a=str),
        model(a=str, b=(str | None, None)),
        True,
        True,
        "field-added",
    ),
    Case("add required field", model(a=str), model(a=str, b=int), False, True, "field-added"),
    Case(
        "remove field with default",
        model(a=str, b=(int, 0)),
        model(a=str),
        True,
        True,
        "field-removed",
    ),
    Case("remove required field", model(a=str, b=int), model(a=str), True, False, "field-removed"),
    Case("rename required field", model(a=str), model(b=str), False, False, "field-added"),
    Case(
        "give a field a default",
        model(a=str, b=int),
        model(a=str, b=(int, 0)),
        True,
        True,
        "default",
    ),
    # types
    Case("str to int", model(a=str), model(a=int), False, False, "type"),
    Case("bool to str", model(a=bool), model(a=str), False, False, "type"),
    Case("model to str", model(a=Line), model(a=str), False, False, "type"),
    # numeric widening and narrowing
    Case("int to float", model(a=int), model(a=float), True, False, "numeric-type"),
    Case("float to int", model(a=float), model(a=int), False, True, "numeric-type"),
    Case("decimal to float", model(a=Decimal), model(a=float), False, True, "numeric-type"),
    Case("float to decimal", model(a=float), model(a=Decimal), True, False, "numeric-type"),
    Case("int to decimal", model(a=int), model(a=Decimal), True, False, "numeric-type"),
    # nullability
    Case("make nullable", model(a=str), model(a=str | None), True, False, "nullability"),
    Case("make non-nullable", model(a=str | None), model(a=str), False, True, "nullability"),
    # Literal / enum values
    Case(
        "add literal value",
        model(a=Literal["x", "y"]),
        model(a=Literal["x", "y", "z"]),
        True,
        False,
        "enum",
    ),
    Case(
        "remove literal value",
        model(a=Literal["x", "y", "z"]),
        model(a=Literal["x", "y"]),
        False,
        True,
        "enum",
    ),
    Case("literal to str", model(a=Literal["x", "y"]), model(a=str), True, False, "enum"),
    Case("str to literal", model(a=str), model(a=Literal["x", "y"]), False, True, "enum"),
    Case(
        "literal values too long for the new reader",
        model(a=Literal["abcdefgh"]),
        model(a=Shorter),
        False,
        False,
        "enum",
    ),
    # string lengths and patterns
    Case("add max length", model(a=str), model(a=Short), False, True, "string-length"),
    Case("tighten max length", model(a=Short), model(a=Shorter), False, True, "string-length"),
    Case("loosen max length", model(a=Shorter), model(a=Short), True, False, "string-length"),
    Case("add min length", model(a=str), model(a=NonEmpty), False, True, "string-length"),
    Case("add pattern", model(a=str), model(a=Sku), False, True, "string-pattern"),
    Case("remove pattern", model(a=Sku), model(a=str), True, False, "string-pattern"),
    Case("change pattern", model(a=Sku), model(a=OtherSku), False, False, "string-pattern"),
    # formats
    Case("str to uuid", model(a=str), model(a=UUID), False, True, "format"),
    Case("uuid to str", model(a=UUID), model(a=str), True, False, "format"),
    Case("str to date-time", model(a=str), model(a=datetime), False, True, "format"),
    Case("date to date-time", model(a=date), model(a=datetime), False, False, "format"),
    Case("decimal to str", model(a=Decimal), model(a=str), False, False, "type"),
    Case("str to decimal", model(a=str), model(a=Decimal), False, False, "format"),
    # numeric bounds
    Case("add minimum", model(a=int), model(a=Positive), False, True, "numeric-bounds"),
    Case("loosen minimum", model(a=Positive), model(a=NonNegative), True, False, "numeric-bounds"),
    Case("add maximum", model(a=int), model(a=Small), False, True, "numeric-bounds"),
    Case(
        "exclusive to inclusive integer bound",
        model(a=Tiny),
        model(a=Below10),
        True,
        True,
        "numeric-bounds",
    ),
    Case(
        "tighten float bounds to exclusive",
        model(a=Ratio),
        model(a=OpenRatio),
        False,
        True,
        "numeric-bounds",
    ),
    Case("add multiple_of", model(a=int), model(a=Even), False, True, "numeric-bounds"),
    Case("multiple_of 2 to 4", model(a=Even), model(a=Fourfold), False, True, "numeric-bounds"),
    # lists, tuples and dicts
    Case(
        "list item int to float",
        model(a=list[int]),
        model(a=list[float]),
        True,
        False,
        "numeric-type",
    ),
    Case("list item int to str", model(a=list[int]), model(a=list[str]), False, False, "type"),
    Case(
        "list item made nullable",
        model(a=list[str]),
        model(a=list[str | None]),
        True,
        False,
        "nullability",
    ),
    Case("add max items", model(a=list[str]), model(a=AtMostThree), False, True, "array-length"),
    Case("add min items", model(a=list[str]), model(a=AtLeastOne), False, True, "array-length"),
    Case(
        "tuple position type",
        model(a=tuple[int, str]),
        model(a=tuple[int, int]),
        False,
        False,
        "type",
    ),
    Case(
        "dict value int to float",
        model(a=dict[str, int]),
        model(a=dict[str, float]),
        True,
        False,
        "numeric-type",
    ),
    Case(
        "dict value str to int",
        model(a=dict[str, str]),
        model(a=dict[str, int]),
        False,
        False,
        "type",
    ),
    # nested models
    Case(
        "nested field with default added",
        model(a=list[Line]),
        model(a=list[LineWithNote]),
        True,
        True,
        "field-added",
    ),
    Case(
        "nested required field added",
        model(a=list[Line]),
        model(a=list[LineWithRequiredNote]),
        False,
        True,
        "field-added",
    ),
    Case(
        "nested field narrowed",
        model(a=list[LineFloatQuantity]),
        model(a=list[Line]),
        False,
        True,
        "numeric-type",
    ),
    Case(
        "nested model field widened",
        model(a=Line),
        model(a=LineFloatQuantity),
        True,
        False,
        "numeric-type",
    ),
    Case(
        "field added to a model that forbids extras",
        model(a=Strict),
        model(a=StrictWithQuantity),
        True,
        False,
        "field-added",
    ),
    # no change at all
    Case("unchanged", model(a=str, b=list[Line]), model(a=str, b=list[Line]), True, True, ""),
]


def verdicts(case: Case, mode: Literal["full", "backward", "forward"]) -> bool:
    findings = compare_schemas(payload_schema(case.old), payload_schema(case.new), mode)
    return not any(f.verdict == "breaking" for f in findings)


def test_the_corpus_is_large_enough_and_covers_every_rule() -> None:
    assert len(CORPUS) >= 40
    rules = {case.rule for case in CORPUS}
    assert rules >= {
        "field-added",
        "field-removed",
        "type",
        "numeric-type",
        "nullability",
        "enum",
        "string-length",
        "string-pattern",
        "format",
        "numeric-bounds",
        "array-length",
        "default",
    }
    # every rule has a change that breaks at least one direction and a change that doesn't
    for rule in rules - {"", "type", "default"}:
        outcomes = {(c.backward, c.forward) for c in CORPUS if c.rule == rule}
        assert any(not all(o) for o in outcomes), rule
        assert any(any(o) for o in outcomes), rule


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_every_change_is_classified_correctly_in_every_mode(case: Case) -> None:
    assert verdicts(case, "backward") is case.backward
    assert verdicts(case, "forward") is case.forward
    assert verdicts(case, "full") is (case.backward and case.forward)


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_the_change_is_named_by_its_rule_at_its_path(case: Case) -> None:
    findings = compare_schemas(payload_schema(case.old), payload_schema(case.new), "full")
    if not case.rule:
        assert findings == []
        return
    assert case.rule in {f.rule for f in findings}, findings
    for finding in findings:
        assert finding.path.split(".")[0].split("[")[0].split("{")[0] in {"a", "b"}
        if finding.verdict == "breaking":
            assert "new version" in finding.message and "upcaster" in finding.message
