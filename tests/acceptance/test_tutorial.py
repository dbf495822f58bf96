"""docs/tutorial.md works as written: its Python snippets run, in order, in a fresh process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "tutorial.md"


def snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", TUTORIAL.read_text(), flags=re.DOTALL)


def test_the_tutorial_has_a_snippet_per_step() -> None:
    assert len(snippets()) >= 8


def tidings_in(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``tidings ARGS`` run from ``folder``, as a user types it there."""
    return subprocess.run(
        [sys.executable, "-m", "tidings", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "400"},
    )


def test_every_tutorial_snippet_runs_in_order(tmp_path: Path) -> None:
    program = tmp_path / "tutorial.py"
    program.write_text("\n\n".join(snippets()))
    result = subprocess.run(
        [sys.executable, str(program)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-4000:]


def test_the_tutorial_saved_as_shop_py_is_what_the_commands_name(tmp_path: Path) -> None:
    """Chapter 9: sections 1 to 5 saved as ``shop.py`` are ``shop:catalog`` and
    ``shop:basket``; each command imports the module again, over the tables it made."""
    before_running = TUTORIAL.read_text().split("## 6.")[0]
    code = re.findall(r"```python\n(.*?)```", before_running, flags=re.DOTALL)
    (tmp_path / "shop.py").write_text("\n\n".join(code))
    for command in (
        ("db", "init", "shop:catalog"),
        ("db", "init", "shop:basket"),
        ("outbox", "status", "shop:catalog"),
        ("dlq", "list", "shop:basket"),
        ("dlq", "replay", "shop:basket"),
    ):
        result = tidings_in(tmp_path, *command)
        assert result.returncode == 0, (command, result.stderr[-2000:])


CONTRACT_IMPORTS = (
    "from decimal import Decimal\nfrom typing import ClassVar\n\nfrom tidings import "
    "IntegrationEvent\nfrom tidings.contracts import check_compatibility\n\n"
)


def test_the_contracts_chapter_shows_what_the_command_prints(tmp_path: Path) -> None:
    """Chapter 10's `tidings contracts check` output, for its own contract module."""
    contract = next(s for s in snippets() if "class ProductPriceChangedIntegrationEvent" in s)
    with_currency = next(s for s in snippets() if 'currency: str = "EUR"' in s)
    shown = re.search(
        r"\$ (tidings contracts check myshop\.catalog\.contracts --against contracts)\n(.*?)```",
        TUTORIAL.read_text(),
        flags=re.DOTALL,
    )
    assert shown is not None
    package = tmp_path / "myshop" / "catalog"
    package.mkdir(parents=True)
    (tmp_path / "myshop" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    module = package / "contracts.py"

    def tidings(*args: str) -> subprocess.CompletedProcess[str]:
        return tidings_in(tmp_path, *args)

    module.write_text(CONTRACT_IMPORTS + contract)
    assert (
        tidings("contracts", "export", "myshop.catalog.contracts", "--out", "contracts").returncode
        == 0
    )
    module.write_text(CONTRACT_IMPORTS + with_currency)
    result = tidings(*shown.group(1).split()[1:])
    assert (result.returncode, result.stdout) == (0, shown.group(2)), result.stderr
