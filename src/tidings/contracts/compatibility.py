"""Compatibility of the contracts in code with a committed snapshot (Confluent's modes).

- **BACKWARD**: a reader on the new contract reads data written with the old one.
- **FORWARD**: a reader on the old contract reads data written with the new one.
- **FULL** (the default): both.

Readers ignore unknown fields; writers write every field of their contract; a field
missing from the data takes the reader's default, else the data is invalid. A reader that
accepts a superset of what the writer can produce is compatible (see
:mod:`tidings.contracts.schema_compare` for the rules). Adding a ``(type, version)`` is
safe; removing one is breaking in every mode; a new version beside the old one is how a
breaking change is made, with an upcaster, which the check also exercises.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from tidings.contracts.catalog import ContractCatalog
from tidings.contracts.integration_event import IntegrationEvent
from tidings.contracts.registry import default_registry
from tidings.contracts.schema import ContractKey, Snapshot, read_snapshot
from tidings.contracts.schema_compare import Direction, Verdict, compare
from tidings.errors import ConfigurationError

Mode = Literal["full", "backward", "forward"]
MODES: tuple[Mode, ...] = ("full", "backward", "forward")
_DIRECTIONS: dict[Mode, tuple[Direction, ...]] = {
    "full": ("backward", "forward"),
    "backward": ("backward",),
    "forward": ("forward",),
}


@dataclass(frozen=True)
class Finding:
    """One classified change of one contract.

    ``direction`` is ``backward`` (new readers, old data), ``forward`` (old readers, new
    data) or ``both`` (a contract added or removed); ``path`` is the field path (empty
    for the whole contract).
    """

    event_type: str
    version: int
    path: str
    rule: str
    verdict: Verdict
    direction: Direction | Literal["both"]
    message: str

    @property
    def contract(self) -> str:
        return f"{self.event_type} v{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {"contract": self.contract, **asdict(self)}


@dataclass(frozen=True)
class CompatibilityReport:
    """What ``tidings contracts check`` found: compatible when no finding is breaking."""

    mode: Mode
    findings: tuple[Finding, ...]
    contracts: int

    @property
    def breaking(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.verdict == "breaking"]

    @property
    def compatible(self) -> bool:
        return not self.breaking

    def to_dict(self) -> dict[str, Any]:
        return {
            "compatible": self.compatible,
            "mode": self.mode,
            "contracts": self.contracts,
            "breaking": len(self.breaking),
            "findings": [finding.to_dict() for finding in self.findings],
        }


def compare_schemas(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    mode: Mode = "full",
    *,
    event_type: str = "contract",
    version: int = 1,
) -> list[Finding]:
    """Every change from the ``old`` schema of one contract to the ``new`` one, per mode."""
    findings: list[Finding] = []
    for direction in _directions(mode):
        reader, writer = (new, old) if direction == "backward" else (old, new)
        for change in compare(reader, writer, direction):
            message = change.message
            if change.verdict == "breaking":
                message += (
                    f"; or make it a new version: publish {event_type} v{version + 1} beside "
                    f"v{version} and register an upcaster (context.add_upcaster)"
                )
            findings.append(
                Finding(
                    event_type,
                    version,
                    change.path,
                    change.rule,
                    change.verdict,
                    direction,
                    message,
                )
            )
    return findings


def check_compatibility(
    contracts: ContractCatalog | Iterable[type[IntegrationEvent]],
    against: Snapshot | Path | str,
    mode: Mode = "full",
    *,
    upcaster_examples: int = 50,
) -> CompatibilityReport:
    """Classify every difference between ``contracts`` (code) and the ``against`` snapshot.

    Registered upcasters of a :class:`ContractCatalog` built from contexts are exercised
    in every mode (needs the ``contracts`` extra when there are any).
    """
    _directions(mode)  # a usage error before any work
    catalog = contracts if isinstance(contracts, ContractCatalog) else ContractCatalog.of(contracts)
    old = against if isinstance(against, Snapshot) else read_snapshot(against)
    new = Snapshot.of(catalog.contracts)
    findings: list[Finding] = []
    for key in sorted(old.schemas.keys() | new.schemas.keys()):
        if key not in new.schemas:
            findings.append(_removed(key))
        elif key not in old.schemas:
            findings.append(_added(key, old.schemas))
        else:
            findings += compare_schemas(
                old.schemas[key], new.schemas[key], mode, event_type=key[0], version=key[1]
            )
    findings += _upcaster_findings(catalog, old, new, upcaster_examples)
    return CompatibilityReport(mode, tuple(findings), len(new.schemas))


def _directions(mode: str) -> tuple[Direction, ...]:
    try:
        return _DIRECTIONS[mode]  # type: ignore[index]
    except KeyError:
        raise ConfigurationError(
            f"unknown compatibility mode {mode!r}; use one of {', '.join(MODES)}"
        ) from None


def _removed(key: ContractKey) -> Finding:
    event_type, version = key
    return Finding(
        event_type,
        version,
        "",
        "contract-removed",
        "breaking",
        "both",
        "the snapshot has this contract and the code no longer does; consumers may depend "
        "on it: keep publishing it beside its successor until none does, then remove it on "
        "purpose and export the snapshot again",
    )


def _added(key: ContractKey, old: Mapping[ContractKey, Any]) -> Finding:
    event_type, version = key
    others = sorted(v for t, v in old if t == event_type)
    if others:
        message = (
            f"a new version beside v{others[-1]}: the way to make a breaking change; keep "
            f"publishing the old version until its consumers read v{version} (register an "
            "upcaster for those that cannot wait), then export the snapshot"
        )
        rule = "new-version"
    else:
        message = "a new contract: export the snapshot to check its later changes"
        rule = "contract-added"
    return Finding(event_type, version, "", rule, "compatible", "both", message)


def _upcaster_findings(
    catalog: ContractCatalog, old: Snapshot, new: Snapshot, examples: int
) -> list[Finding]:
    findings: list[Finding] = []
    for registered in catalog.upcasters:
        key = (registered.event_type, registered.from_version)
        target = key[0], key[1] + 1
        entry = catalog.entries.get(target)
        new_contract = entry.contract if entry else default_registry.get(*target)
        source = old.schemas.get(key) or new.schemas.get(key)
        where = f"{registered.context}'s upcaster v{key[1]} -> v{target[1]}"
        if new_contract is None or source is None:
            missing = f"v{target[1]}" if new_contract is None else f"v{key[1]}"
            findings.append(
                _upcaster(
                    key,
                    "breaking",
                    f"{where}: no {key[0]} {missing} contract is "
                    "defined; define it, or remove the upcaster",
                )
            )
            continue
        from tidings.contracts.upcaster_check import first_failure

        failure = first_failure(source, registered.upcaster, new_contract, examples=examples)
        if failure is None:
            findings.append(
                _upcaster(
                    key,
                    "compatible",
                    f"{where} turns {examples} generated "
                    f"v{key[1]} payloads into valid v{target[1]} events",
                )
            )
        else:
            findings.append(
                _upcaster(
                    key,
                    "breaking",
                    f"{where} does not make a valid v{target[1]} from "
                    f"every v{key[1]} payload: {failure}; fix the upcaster (give missing fields a "
                    "value, convert changed ones)",
                )
            )
    return findings


def _upcaster(key: ContractKey, verdict: Verdict, message: str) -> Finding:
    return Finding(key[0], key[1], "", "upcaster", verdict, "backward", message)
