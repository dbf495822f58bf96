"""Runs ``tidings trace`` for many ids in one process: ``python -m tests.support.trace_cli
TARGET ID...`` prints a JSON list of the ``--json`` documents (the CLI's own output)."""

from __future__ import annotations

import json
import sys

from typer.testing import CliRunner

from tidings.cli.app import app


def main(target: str, ids: list[str]) -> None:
    runner = CliRunner()
    documents = []
    for trace_id in ids:
        result = runner.invoke(app, ["trace", target, "--id", trace_id, "--json"])
        if result.exit_code != 0:
            raise SystemExit(f"tidings trace --id {trace_id} failed: {result.output}")
        documents.append(json.loads(result.stdout))
    print(json.dumps(documents))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
