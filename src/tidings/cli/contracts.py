"""``tidings contracts``: export the contracts' JSON Schemas, check compatibility, list them.

Exit codes: 0 done (``check``: compatible), 1 ``check`` found a breaking change, 2 usage
error (a target that cannot be loaded, a missing snapshot, an unknown mode).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from tidings.errors import TidingsError

if TYPE_CHECKING:  # imported by the commands, not by `tidings --help`
    from tidings.contracts.catalog import ContractCatalog, ContractEntry, Parties
    from tidings.contracts.compatibility import CompatibilityReport

app = typer.Typer(
    help="Integration event contracts: JSON Schema snapshots, compatibility checks, a catalog.",
    no_args_is_help=True,
)
console = Console()
errors = Console(stderr=True)

TargetsArg = Annotated[
    list[str],
    typer.Argument(
        help="Where the contracts are: a module (the IntegrationEvent classes defined in "
        "it) or a context or system as MODULE:ATTRIBUTE (the contracts it publishes and "
        "consumes), e.g. examples.ecommerce.system.",
        metavar="TARGET",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


class CheckMode(StrEnum):
    """Confluent Schema Registry's compatibility modes."""

    full = "full"
    backward = "backward"
    forward = "forward"


@app.command("export")
def export(
    targets: TargetsArg,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Snapshot directory: one <type>.v<version>.json per contract "
            "and index.json; schemas no longer exported are removed.",
            show_default=False,
        ),
    ],
) -> None:
    """Write one JSON Schema (draft 2020-12) per contract, deterministic, for committing."""
    catalog = _catalog(targets)
    try:
        from tidings.contracts.schema import export_snapshot

        export_snapshot(catalog.contracts, out)
    except TidingsError as error:
        _usage_error(error)
    console.print(f"[green]✓[/] {_count(len(catalog), 'contract')} exported to {out}")


@app.command("check")
def check(
    targets: TargetsArg,
    against: Annotated[
        Path,
        typer.Option(
            "--against",
            help="The snapshot directory to compare with (from `export`).",
            show_default=False,
        ),
    ],
    mode: Annotated[
        CheckMode,
        typer.Option(
            help="backward: new readers read old data; forward: old readers read new data; "
            "full: both.",
            case_sensitive=False,
        ),
    ] = CheckMode.full,
    as_json: JsonOpt = False,
) -> None:
    """Classify every change since the snapshot; exit 1 if any is breaking.

    Adding a (type, version) is safe; removing one is breaking in every mode; registered
    upcasters are exercised with generated payloads of the old version. Exit codes: 0
    compatible, 1 breaking, 2 usage error. The rules: docs/contracts.md.
    """
    catalog = _catalog(targets)
    try:
        from tidings.contracts.compatibility import check_compatibility

        report = check_compatibility(catalog, against, mode.value)
    except TidingsError as error:
        _usage_error(error)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report, against)
    if not report.compatible:
        raise typer.Exit(1)


@app.command("list")
def list_contracts(targets: TargetsArg, as_json: JsonOpt = False) -> None:
    """The contracts with their producing and consuming contexts, fields and partition key."""
    rows = [_entry_json(entry) for entry in _catalog(targets)]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table("type", "v", "producer", "consumers", "fields", "partition key")
    for column in (table.columns[0], table.columns[4]):
        column.overflow = "fold"  # type and field names are never cut short
    for row in rows:
        cells = (
            row["type"],
            str(row["version"]),
            _parties_text(row["producers"]),
            _parties_text(row["consumers"]),
            "\n".join(f"{name}: {kind}" for name, kind in row["fields"].items()),
            row["partition_key"] or "(event id)",
        )
        # Escaped: rich would read "list[string]" as markup and print "list".
        table.add_row(*(escape(cell) for cell in cells))
    console.print(table)


def _catalog(targets: list[str]) -> ContractCatalog:
    from tidings.contracts.catalog import ContractCatalog

    try:
        catalog = ContractCatalog.from_targets(targets)
    except TidingsError as error:
        _usage_error(error)
    if not len(catalog):
        _usage_error(
            f"no integration event contracts in {' '.join(targets)}; name a module that "
            "defines IntegrationEvent classes, or a context or system"
        )
    return catalog


def _usage_error(error: object) -> NoReturn:
    errors.print(f"[red]error:[/] {escape(str(error))}", soft_wrap=True)
    raise typer.Exit(2)


def _print_report(report: CompatibilityReport, against: Path) -> None:
    # One line per finding: messages are sentences, which table cells wrap badly.
    for finding in report.findings:
        style = "red" if finding.verdict == "breaking" else "green"
        where = f" {finding.path}" if finding.path else ""
        text = f"{finding.contract}{where} ({finding.rule}, {finding.direction}): {finding.message}"
        console.print(
            f"[{style}]{finding.verdict}[/] {escape(text)}",
            highlight=False,
            soft_wrap=True,
        )
    if report.compatible:
        console.print(
            f"[green]✓[/] {_count(report.contracts, 'contract')} compatible with {against} "
            f"({report.mode})",
            soft_wrap=True,
        )
    else:
        console.print(
            f"[red]✗[/] {_count(len(report.breaking), 'breaking change')} against {against} "
            f"({report.mode})",
            soft_wrap=True,
        )


def _count(number: int, thing: str) -> str:
    return f"{number} {thing}{'' if number == 1 else 's'}"


def _entry_json(entry: ContractEntry) -> dict[str, Any]:
    from tidings.contracts.schema import contract_schema, describe_fields

    schema = contract_schema(entry.contract)
    return {
        "type": entry.contract.event_type,
        "version": entry.contract.event_version,
        "class": f"{entry.contract.__module__}.{entry.contract.__qualname__}",
        "producers": _parties_json(entry.producers),
        "consumers": _parties_json(entry.consumers),
        "fields": describe_fields(schema),
        "partition_key": entry.contract.__tidings_key_field__,
    }


def _parties_json(parties: Parties) -> list[dict[str, Any]]:
    return [{"context": context, "handlers": list(handlers)} for context, handlers in parties]


def _parties_text(parties: list[dict[str, Any]]) -> str:
    return (
        "\n".join(
            f"{party['context']}: {', '.join(h.rsplit('.', 1)[-1] for h in party['handlers'])}"
            for party in parties
        )
        or "-"
    )
