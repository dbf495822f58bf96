"""docs/tutorial.md works as written: its Python snippets run, in order, in a fresh process."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "tutorial.md"


def snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", TUTORIAL.read_text(), flags=re.DOTALL)


def test_the_tutorial_has_a_snippet_per_step() -> None:
    assert len(snippets()) >= 8


def test_every_tutorial_snippet_runs_in_order(tmp_path: Path) -> None:
    program = tmp_path / "tutorial.py"
    program.write_text("\n\n".join(snippets()))
    result = subprocess.run(
        [sys.executable, str(program)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-4000:]
