"""Validating AsyncAPI documents with the AsyncAPI project's own parser.

``@asyncapi/parser`` runs on the machine's Node.js; ``.ci/services/asyncapi-parser.sh``
installs it into ``.ci/node/``. Without node or the parser the tests that need it are
skipped on a laptop, with the reason, and fail under CI.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.services import in_ci

Report = dict[str, list[dict[str, str]]]
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "asyncapi-validate.cjs"
PARSER = ROOT / ".ci" / "node" / "node_modules" / "@asyncapi" / "parser" / "package.json"


def require_parser() -> str:
    """The node executable; skips (fails under CI) when node or the parser is missing."""
    node = shutil.which("node")
    if node is not None and PARSER.exists():
        return node
    missing = (
        "node is not installed"
        if node is None
        else "@asyncapi/parser is not installed (run .ci/services/asyncapi-parser.sh)"
    )
    if in_ci():
        pytest.fail(f"{missing}; CI=true requires it (.ci/run installs it)")
    pytest.skip(f"{missing}; install it to validate AsyncAPI documents")


def parse(documents: dict[str, dict[str, Any]], folder: Path) -> dict[str, Report]:
    """The parser's report on each document, by name: ``{"errors": [...], "warnings": [...]}``.

    One node process parses them all (starting node and the parser dominates the cost).
    """
    node = require_parser()
    paths = {name: folder / f"{name}.asyncapi.json" for name in documents}
    for name, document in documents.items():
        paths[name].write_text(json.dumps(document, indent=2))
    result = subprocess.run(
        [node, str(SCRIPT), *map(str, paths.values())],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode not in (0, 1):
        raise AssertionError(f"the parser failed to run: {result.stderr[-2000:]}")
    reports: dict[str, Report] = json.loads(result.stdout)
    return {name: reports[str(path)] for name, path in paths.items()}
