"""``tidings contracts check`` on 200 contracts: the in-process API and the CLI process.

Writes a module of 200 integration events (ten fields each: strings with constraints,
decimals, literals, optional and nested list fields), exports its snapshot, then times
``check_compatibility`` (best of 5) and ``tidings contracts check MODULE --against DIR``
as a process (best of 3, interpreter start-up and imports included; its CPU time too, which
a busy machine does not inflate). Target: < 2 s.

    python benchmarks/contracts_check.py
"""

from __future__ import annotations

import importlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONTRACTS = 200
MODULE = "benchmark_contracts_200"

HEADER = """
from decimal import Decimal
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, Field

from tidings import IntegrationEvent


class Line(BaseModel):
    sku: Annotated[str, Field(max_length=32)]
    quantity: Annotated[int, Field(ge=1)]
    unit_price: Decimal
"""

CONTRACT = """

class Benchmark{n}IntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = "benchmark.contract{n}.happened"
    event_version: ClassVar[int] = 1

    subject_id: str
    name: Annotated[str, Field(min_length=1, max_length=200)]
    amount: Decimal
    count: Annotated[int, Field(ge=0, le=1_000_000)]
    ratio: float
    state: Literal["open", "closed", "archived"]
    tags: list[str]
    lines: list[Line]
    attributes: dict[str, int]
    note: str | None = None
"""


def write_module(directory: Path) -> None:
    text = HEADER + "".join(CONTRACT.format(n=n) for n in range(CONTRACTS))
    (directory / f"{MODULE}.py").write_text(text)


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        write_module(directory)
        sys.path.insert(0, scratch)
        from tidings.contracts import ContractCatalog, check_compatibility, export_snapshot

        catalog = ContractCatalog.from_module(importlib.import_module(MODULE))
        assert len(catalog) == CONTRACTS
        snapshot = directory / "contracts"
        export_snapshot(catalog.contracts, snapshot)

        in_process = []
        for _ in range(5):
            started = time.perf_counter()
            report = check_compatibility(catalog, snapshot)
            in_process.append(time.perf_counter() - started)
            assert report.compatible and report.contracts == CONTRACTS

        command = [sys.executable, "-m", "tidings", "contracts", "check", MODULE]
        cli, cli_cpu = [], []
        for _ in range(3):
            started = time.perf_counter()
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            result = subprocess.run(
                [*command, "--against", str(snapshot)],
                cwd=scratch,
                capture_output=True,
                timeout=120,
            )
            cli.append(time.perf_counter() - started)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cli_cpu.append(after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime)
            assert result.returncode == 0, result.stderr.decode()[-2000:]

    print(f"check_compatibility, {CONTRACTS} contracts: {min(in_process):.3f} s")
    print(f"tidings contracts check, {CONTRACTS} contracts (process): {min(cli):.3f} s")
    print(f"  of which CPU time: {min(cli_cpu):.3f} s (the rest is waiting on a busy machine)")
    figures = {
        "check_200_s": round(min(in_process), 3),
        "cli_200_s": round(min(cli), 3),
        "cli_200_cpu_s": round(min(cli_cpu), 3),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
