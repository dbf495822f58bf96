"""Immutable record classes: subclasses become frozen dataclasses automatically."""

from __future__ import annotations

import dataclasses
from typing import Any, dataclass_transform


def _refuse_mutation(self: object, name: str, *_: object) -> None:
    raise dataclasses.FrozenInstanceError(
        f"cannot change {name!r}: {type(self).__name__} is immutable; create a new one instead"
    )


@dataclass_transform(frozen_default=True)
class FrozenRecord:
    """Base whose subclasses are frozen dataclasses without a decorator.

    Writing ``@dataclass(frozen=True)`` on a subclass as well is harmless: the
    per-class mutation guards are removed after processing, and the single guard on
    this base protects every subclass, whatever its fields.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        make_frozen_dataclass(cls)

    __setattr__ = _refuse_mutation
    __delattr__ = _refuse_mutation


def make_frozen_dataclass(cls: type) -> None:
    """Turn ``cls`` into a frozen dataclass relying on its base's mutation guard."""
    dataclasses.dataclass(frozen=True)(cls)
    for name in ("__setattr__", "__delattr__"):
        if name in cls.__dict__:
            delattr(cls, name)
