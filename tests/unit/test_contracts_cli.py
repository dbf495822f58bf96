"""tidings contracts export / check / list, their output and exit codes.

The reference system runs in child processes (its contract types are also defined by
other test modules, which one registry cannot hold together); the other cases run in
process on the contracts of tests.unit.test_contracts_check.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from tests.unit.test_contracts_check import TYPE, context_with
from tidings import IntegrationEvent
from tidings.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
SYSTEM = "examples.ecommerce.system"
COMMITTED = ROOT / "examples" / "ecommerce" / "contracts"
MODULE = "tests.unit.test_contracts_check"
runner = CliRunner()


class TaggedIntegrationEvent(IntegrationEvent):
    """A contract whose field types print with brackets (``list[string]``)."""

    event_type: ClassVar[str] = "tests.contracts.cli.tagged"
    event_version: ClassVar[int] = 1

    product_id: str
    tags: list[str]


# The upcaster forgets price_cents: its finding quotes pydantic's "[type=missing, ...]".
forgetful = context_with(lambda payload: payload)


def tidings(*args: str) -> tuple[int, str]:
    """In process."""
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def tidings_process(*args: str) -> tuple[int, str]:
    """As a process, from the project root (where ``examples`` is importable)."""
    result = subprocess.run(
        [sys.executable, "-m", "tidings", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "250"},
    )
    return result.returncode, result.stdout + result.stderr


def edit(path: Path, field: str) -> None:
    """Make a snapshot's schema older: ``field`` not there yet."""
    schema = json.loads(path.read_text())
    del schema["properties"][field]
    schema["required"].remove(field)
    path.write_text(json.dumps(schema))


@pytest.fixture
def snapshot(tmp_path: Path) -> Path:
    code, output = tidings("contracts", "export", MODULE, "--out", str(tmp_path / "contracts"))
    assert code == 0, output
    assert "2 contracts exported" in output
    return tmp_path / "contracts"


def test_check_against_an_identical_snapshot_exits_0(snapshot: Path) -> None:
    code, output = tidings("contracts", "check", MODULE, "--against", str(snapshot))
    assert code == 0, output
    assert "2 contracts compatible" in output


def test_check_exits_1_on_a_breaking_change_in_the_modes_it_breaks(snapshot: Path) -> None:
    edit(snapshot / f"{TYPE}.v1.json", "price")
    for mode, expected in (("full", 1), ("backward", 1), ("forward", 0)):
        code, output = tidings(
            "contracts", "check", MODULE, "--against", str(snapshot), "--mode", mode
        )
        assert code == expected, (mode, output)
    code, output = tidings("contracts", "check", MODULE, "--against", str(snapshot), "--json")
    report = json.loads(output)
    assert code == 1 and report["compatible"] is False and report["mode"] == "full"
    assert (report["contracts"], report["breaking"]) == (2, 1)
    [breaking] = [f for f in report["findings"] if f["verdict"] == "breaking"]
    assert breaking["contract"] == f"{TYPE} v1"
    assert (breaking["path"], breaking["rule"], breaking["direction"]) == (
        "price",
        "field-added",
        "backward",
    )
    assert "give 'price' a default" in breaking["message"]


def test_a_removed_contract_breaks_in_every_mode(snapshot: Path) -> None:
    shutil.copy(COMMITTED / "payments.payment.completed.v1.json", snapshot)
    index = json.loads((snapshot / "index.json").read_text())
    index["contracts"].append(
        {
            "file": "payments.payment.completed.v1.json",
            "type": "payments.payment.completed",
            "version": 1,
        }
    )
    (snapshot / "index.json").write_text(json.dumps(index))
    for mode in ("full", "backward", "forward"):
        code, output = tidings(
            "contracts", "check", MODULE, "--against", str(snapshot), "--mode", mode, "--json"
        )
        findings = json.loads(output)["findings"]
        assert code == 1
        assert [(f["contract"], f["rule"]) for f in findings] == [
            ("payments.payment.completed v1", "contract-removed")
        ]


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert tidings("contracts", "check", MODULE, "--against", str(tmp_path))[0] == 2
    assert tidings("contracts", "check", "no.such.module", "--against", str(tmp_path))[0] == 2
    assert tidings("contracts", "export", "tidings.errors", "--out", str(tmp_path))[0] == 2
    assert tidings("contracts", "check", MODULE, "--against", ".", "--mode", "sideways")[0] == 2


def test_the_reference_system_checks_clean_and_a_breaking_change_exits_1(
    tmp_path: Path,
) -> None:
    changed = tmp_path / "changed"
    shutil.copytree(COMMITTED, changed)
    edit(changed / "identity.user.registered.v1.json", "email")
    assert tidings_process("contracts", "check", SYSTEM, "--against", str(COMMITTED)) == (
        0,
        f"✓ 6 contracts compatible with {COMMITTED} (full)\n",
    )
    code, output = tidings_process("contracts", "check", SYSTEM, "--against", str(changed))
    assert code == 1
    assert (
        "breaking identity.user.registered v1 email (field-added, backward): new readers "
        "require 'email' and old data lacks it; give 'email' a default" in output
    )
    assert output.rstrip().endswith(f"✗ 1 breaking change against {changed} (full)")


def test_list_names_producers_consumers_fields_and_partition_keys() -> None:
    code, output = tidings_process("contracts", "list", SYSTEM, "--json")
    assert code == 0, output
    rows = {(row["type"], row["version"]): row for row in json.loads(output)}
    confirmed = rows[("ordering.order.confirmed", 1)]
    assert (
        confirmed["class"] == "examples.ecommerce.ordering.contracts.OrderConfirmedIntegrationEvent"
    )
    assert [p["context"] for p in confirmed["producers"]] == ["ordering"]
    assert sorted(c["context"] for c in confirmed["consumers"]) == [
        "inventory",
        "notifications",
        "payments",
    ]
    assert confirmed["fields"]["lines"] == "list[OrderLine]"
    assert confirmed["fields"]["total"] == "number|decimal"
    assert confirmed["partition_key"] == "order_id"
    code, output = tidings("contracts", "list", MODULE)
    assert code == 0 and TYPE[:15] in output


def test_list_prints_field_types_with_their_brackets() -> None:
    code, output = tidings("contracts", "list", "tests.unit.test_contracts_cli")
    assert code == 0, output
    assert "list[string]" in output


def test_check_prints_bracketed_text_of_a_finding_as_it_is(snapshot: Path) -> None:
    code, output = tidings(
        "contracts", "check", MODULE, f"{__name__}:forgetful", "--against", str(snapshot)
    )
    assert code == 1, output
    assert "[type=missing" in output
