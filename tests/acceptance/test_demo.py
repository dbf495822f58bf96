"""`tidings demo`: the reference system converges, on embedded defaults and real services."""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import require
from tidings.domain.ids import uuid7

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "ecommerce"
SMALL = ["--users", "8", "--products", "10", "--orders", "20", "--price-changes", "10"]


def run_demo(
    *arguments: str, folder: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tidings", "demo", *SMALL, "--folder", str(folder), *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"COLUMNS": "120", "PATH": "/usr/bin:/bin", "HOME": str(folder)},
    )


def assert_converged(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "every context converged" in result.stdout
    assert "FAIL" not in result.stdout


def test_the_demo_converges_on_embedded_defaults(tmp_path: Path) -> None:
    assert_converged(run_demo(folder=tmp_path))


@pytest.mark.slow
def test_the_demo_converges_while_processes_are_killed(tmp_path: Path) -> None:
    result = run_demo("--chaos", "--chaos-kills", "6", folder=tmp_path)
    assert_converged(result)
    assert "killed with SIGKILL and restarted" in result.stdout


@pytest.mark.slow
def test_the_demo_converges_on_postgresql_and_rabbitmq(tmp_path: Path) -> None:
    database = require("postgres").rsplit("/", 1)[0] + "/postgres"
    broker = require("rabbitmq")
    assert_converged(run_demo("--database", database, "--broker", broker, folder=tmp_path))


@pytest.mark.slow
def test_the_demo_converges_on_nats(tmp_path: Path) -> None:
    # A stream of its own, so no other stream capturing the default subjects interferes.
    tag = uuid7().hex[-10:]
    stream, prefix = f"TIDINGS_DEMO_{tag}", f"tidings_demo_{tag}"
    broker = f"{require('nats')}?stream={stream}&subject_prefix={prefix}"
    try:
        assert_converged(run_demo("--broker", broker, folder=tmp_path))
    finally:
        asyncio.run(_delete_nats_stream(require("nats"), stream))


@pytest.mark.slow
def test_the_demo_converges_on_pubsub(tmp_path: Path) -> None:
    # A topic of its own on the emulator, removed with its subscriptions afterwards.
    from tests.support.pubsub_admin import remove_topic

    broker = f"{require('pubsub')}&topic=tidings-demo-{uuid7().hex[-10:]}"
    try:
        assert_converged(run_demo("--broker", broker, folder=tmp_path))
    finally:
        asyncio.run(remove_topic(broker))


async def _delete_nats_stream(url: str, stream: str) -> None:
    import nats

    client = await nats.connect(url)
    try:
        await client.jetstream().delete_stream(stream)
    finally:
        await client.close()


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    "domain", sorted(EXAMPLES.glob("*/domain.py")), ids=lambda p: p.parent.name
)
def test_each_context_domain_layer_imports_only_tidings_domain_and_the_standard_library(
    domain: Path,
) -> None:
    outside = {
        name
        for name in _imported_modules(domain)
        if name.split(".")[0] not in sys.stdlib_module_names
        and name != "tidings.domain"
        and not name.startswith("tidings.domain.")
    }
    assert not outside, f"{domain.parent.name}/domain.py imports {sorted(outside)}"


def test_the_tidings_domain_layer_imports_only_the_standard_library() -> None:
    package = Path(__file__).resolve().parents[2] / "src" / "tidings" / "domain"
    for module in package.glob("*.py"):
        outside = {
            name
            for name in _imported_modules(module)
            if name.split(".")[0] not in sys.stdlib_module_names
            and not name.startswith("tidings.domain")
        }
        assert not outside, f"tidings/domain/{module.name} imports {sorted(outside)}"


def test_contexts_share_nothing_but_contracts() -> None:
    """A context imports another context only through its contracts module."""
    for module in EXAMPLES.glob("*/*.py"):
        own = module.parent.name
        for name in _imported_modules(module):
            parts = name.split(".")
            if parts[:2] == ["examples", "ecommerce"] and len(parts) > 2:
                other = parts[2]
                if other not in (own, "settings"):
                    assert parts[3:] == ["contracts"], f"{own}/{module.name} imports {name}"
