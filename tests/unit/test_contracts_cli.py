"""tidings contracts export / check / list on the reference system, and their exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tidings.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
SYSTEM = "examples.ecommerce.system"
runner = CliRunner()


def tidings(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def snapshot(tmp_path: Path) -> Path:
    code, output = tidings("contracts", "export", SYSTEM, "--out", str(tmp_path / "contracts"))
    assert code == 0, output
    assert "6 contracts exported" in output
    return tmp_path / "contracts"


def without_email(snapshot: Path) -> None:
    """Make the snapshot's UserRegistered v1 older: no ``email`` field yet."""
    path = snapshot / "identity.user.registered.v1.json"
    schema = json.loads(path.read_text())
    del schema["properties"]["email"]
    schema["required"].remove("email")
    path.write_text(json.dumps(schema))


def test_export_writes_the_committed_snapshot(snapshot: Path) -> None:
    committed = ROOT / "examples" / "ecommerce" / "contracts"
    assert {p.name: p.read_text() for p in snapshot.iterdir()} == {
        p.name: p.read_text() for p in committed.iterdir()
    }


def test_check_against_an_identical_snapshot_exits_0(snapshot: Path) -> None:
    code, output = tidings("contracts", "check", SYSTEM, "--against", str(snapshot))
    assert code == 0, output
    assert "6 contracts compatible" in output


def test_check_exits_1_on_a_breaking_change_per_mode(snapshot: Path) -> None:
    without_email(snapshot)
    for mode, expected in (("full", 1), ("backward", 1), ("forward", 0)):
        code, output = tidings(
            "contracts", "check", SYSTEM, "--against", str(snapshot), "--mode", mode
        )
        assert code == expected, (mode, output)
    code, output = tidings("contracts", "check", SYSTEM, "--against", str(snapshot), "--json")
    report = json.loads(output)
    assert code == 1 and report["compatible"] is False and report["mode"] == "full"
    [breaking] = [f for f in report["findings"] if f["verdict"] == "breaking"]
    assert breaking["contract"] == "identity.user.registered v1"
    assert (breaking["path"], breaking["rule"], breaking["direction"]) == (
        "email",
        "field-added",
        "backward",
    )
    assert "give 'email' a default" in breaking["message"]


def test_a_removed_contract_breaks_in_every_mode(snapshot: Path) -> None:
    for mode in ("full", "backward", "forward"):
        code, output = tidings(
            "contracts",
            "check",
            "examples.ecommerce.catalog.contracts",
            "--against",
            str(snapshot),
            "--mode",
            mode,
            "--json",
        )
        rules = {(f["contract"], f["rule"]) for f in json.loads(output)["findings"]}
        assert code == 1
        assert ("identity.user.registered v1", "contract-removed") in rules


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert tidings("contracts", "check", SYSTEM, "--against", str(tmp_path))[0] == 2
    assert tidings("contracts", "check", "no.such.module", "--against", str(tmp_path))[0] == 2
    assert tidings("contracts", "export", "tidings.errors", "--out", str(tmp_path))[0] == 2
    assert tidings("contracts", "check", SYSTEM, "--against", ".", "--mode", "sideways")[0] == 2


def test_list_names_producers_consumers_fields_and_partition_keys() -> None:
    code, output = tidings("contracts", "list", SYSTEM, "--json")
    assert code == 0, output
    rows = {(row["type"], row["version"]): row for row in json.loads(output)}
    confirmed = rows[("ordering.order.confirmed", 1)]
    assert [p["context"] for p in confirmed["producers"]] == ["ordering"]
    assert sorted(c["context"] for c in confirmed["consumers"]) == [
        "inventory",
        "notifications",
        "payments",
    ]
    assert confirmed["fields"]["lines"] == "list[OrderLine]"
    assert confirmed["partition_key"] == "order_id"
    code, output = tidings("contracts", "list", "examples.ecommerce.catalog.contracts")
    assert code == 0 and "catalog.product" in output and ".updated" in output


def test_the_command_runs_as_a_process(snapshot: Path, tmp_path: Path) -> None:
    changed = tmp_path / "changed"
    shutil.copytree(snapshot, changed)
    without_email(changed)
    command = [sys.executable, "-m", "tidings", "contracts", "check", SYSTEM, "--against"]
    ok = subprocess.run([*command, str(snapshot)], cwd=ROOT, capture_output=True, timeout=60)
    broken = subprocess.run([*command, str(changed)], cwd=ROOT, capture_output=True, timeout=60)
    assert (ok.returncode, broken.returncode) == (0, 1), broken.stderr
