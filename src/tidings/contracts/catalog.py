"""The contracts of an application: who produces and who consumes each, and its upcasters.

A :class:`ContractCatalog` is built from bounded contexts (the contracts they publish and
consume, read by :mod:`tidings.application.event_flow`), from modules (the
``IntegrationEvent`` subclasses defined in them) or from command-line targets
(:meth:`ContractCatalog.from_targets`), and is what ``tidings contracts export``,
``check`` and ``list`` work on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING

from tidings.contracts.integration_event import IntegrationEvent
from tidings.contracts.schema import ContractKey, contract_key
from tidings.contracts.upcasting import Upcaster

if TYPE_CHECKING:
    from tidings.context import BoundedContext

#: (context name, handler ids) pairs.
Parties = tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class ContractEntry:
    """One contract with the contexts that publish it and those that handle it."""

    contract: type[IntegrationEvent]
    producers: Parties = ()
    consumers: Parties = ()

    @property
    def key(self) -> ContractKey:
        return contract_key(self.contract)


@dataclass(frozen=True)
class RegisteredUpcaster:
    """An upcaster a context registered: ``event_type`` v``from_version`` → v+1."""

    context: str
    event_type: str
    from_version: int
    upcaster: Upcaster


@dataclass
class ContractCatalog:
    """Contracts by ``(event_type, event_version)``, sorted, with producers and consumers."""

    entries: dict[ContractKey, ContractEntry] = field(default_factory=dict)
    upcasters: list[RegisteredUpcaster] = field(default_factory=list)

    def __iter__(self) -> Iterator[ContractEntry]:
        return iter(self.entries[key] for key in sorted(self.entries))

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def contracts(self) -> list[type[IntegrationEvent]]:
        """The contract classes, sorted by type and version."""
        return [entry.contract for entry in self]

    def add(
        self,
        contract: type[IntegrationEvent],
        *,
        producer: tuple[str, tuple[str, ...]] | None = None,
        consumer: tuple[str, tuple[str, ...]] | None = None,
    ) -> None:
        """Add a contract (again, to name one more producing or consuming context)."""
        entry = self.entries.get(contract_key(contract), ContractEntry(contract))
        self.entries[contract_key(contract)] = ContractEntry(
            contract,
            entry.producers + ((producer,) if producer else ()),
            entry.consumers + ((consumer,) if consumer else ()),
        )

    @classmethod
    def of(
        cls,
        contracts: Iterable[type[IntegrationEvent]],
        *,
        upcasters_of: Iterable[BoundedContext] = (),
    ) -> ContractCatalog:
        """A catalog of contract classes, with the upcasters of ``upcasters_of`` contexts
        (without producers or consumers)."""
        catalog = cls()
        for contract in contracts:
            catalog.add(contract)
        for context in upcasters_of:
            catalog.upcasters.extend(_upcasters(context))
        return catalog

    @classmethod
    def from_contexts(cls, contexts: Iterable[BoundedContext]) -> ContractCatalog:
        """The contracts the contexts publish and consume, and their upcasters."""
        from tidings.application.event_flow import consumed_contracts, published_contracts

        catalog = cls()
        for context in contexts:
            for contract, handlers in published_contracts(context).items():
                catalog.add(contract, producer=(context.name, handlers))
            for contract, handlers in consumed_contracts(context).items():
                catalog.add(contract, consumer=(context.name, handlers))
            catalog.upcasters.extend(_upcasters(context))
        return catalog

    @classmethod
    def from_module(cls, module: ModuleType) -> ContractCatalog:
        """The ``IntegrationEvent`` subclasses defined in ``module`` (not merely imported)."""
        return cls.of(
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, IntegrationEvent)
            and value is not IntegrationEvent
            and value.__module__ == module.__name__
        )

    @classmethod
    def from_targets(cls, targets: Sequence[str]) -> ContractCatalog:
        """The catalog of command-line targets, merged.

        ``module:attribute`` names a BoundedContext or a System (see
        :func:`tidings.cli.loading.load_contexts`). A bare ``module`` is a context or
        system when it has a ``system`` or ``context`` attribute that is one, else the
        contracts defined in it.
        """
        from tidings.cli.loading import import_target_module, load_contexts
        from tidings.context import BoundedContext
        from tidings.system import System

        catalog = cls()
        for target in targets:
            if ":" not in target:
                module = import_target_module(target)
                named = getattr(module, "system", getattr(module, "context", None))
                if not isinstance(named, BoundedContext | System):
                    catalog.merge(cls.from_module(module))
                    continue
            catalog.merge(cls.from_contexts(load_contexts([target])))
        return catalog

    def merge(self, other: ContractCatalog) -> None:
        """Add every contract, party and upcaster of ``other`` (each context once)."""
        known = {(u.context, u.event_type, u.from_version) for u in self.upcasters}
        for entry in other:
            self.add(entry.contract)
            current = self.entries[entry.key]
            self.entries[entry.key] = ContractEntry(
                entry.contract,
                _union(current.producers, entry.producers),
                _union(current.consumers, entry.consumers),
            )
        self.upcasters.extend(
            u for u in other.upcasters if (u.context, u.event_type, u.from_version) not in known
        )


def _upcasters(context: BoundedContext) -> list[RegisteredUpcaster]:
    steps = context.upcasters.steps()
    return [
        RegisteredUpcaster(context.name, event_type, version, steps[(event_type, version)])
        for event_type, version in sorted(steps)
    ]


def _union(first: Parties, second: Parties) -> Parties:
    return first + tuple(party for party in second if party not in first)
