"""The reference system's contracts: the committed snapshot is current, and its schemas are
valid draft 2020-12 schemas accepting every payload tidings writes.

Both run in a child process: the reference system's contracts share type names with
contracts other test modules define, which one registry cannot hold together.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = ROOT / "examples" / "ecommerce" / "contracts"


def test_the_committed_snapshot_is_current(tmp_path: Path) -> None:
    command = ["-m", "tidings", "contracts", "export", "examples.ecommerce.system"]
    result = subprocess.run(
        [sys.executable, *command, "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    exported = {path.name: path.read_text() for path in tmp_path.iterdir()}
    committed = {path.name: path.read_text() for path in SNAPSHOT.iterdir()}
    assert exported == committed, (
        "examples/ecommerce/contracts is stale: run `tidings contracts export "
        "examples.ecommerce.system --out examples/ecommerce/contracts` (after `tidings "
        "contracts check` says the change is compatible)"
    )
    assert len(json.loads(committed["index.json"])["contracts"]) == 6


def test_the_schemas_accept_the_payloads_tidings_writes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.contracts_reference", str(SNAPSHOT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    written = json.loads(result.stdout.splitlines()[-1])
    assert sorted(written) == [
        "catalog.product.price_changed",
        "catalog.product.updated",
        "identity.user.registered",
        "inventory.stock.modified",
        "ordering.order.confirmed",
        "payments.payment.completed",
    ]
    assert all(count >= 20 for count in written.values()), written
