"""Options that only make sense together are usage errors (exit 2), not ignored."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tidings.cli.app import app


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["consume", "some.module:context", "--json"], "goes with --status"),
        (["declare", "some.module:context", "--yes"], "goes with --delete"),
        # CliRunner's input is no terminal: deleting cannot ask, so it needs --yes.
        (["declare", "some.module:context", "--delete"], "required with --delete"),
        (["declare", "some.module:context", "--delete", "--json"], "required with --delete"),
    ],
)
def test_options_given_without_their_companion_are_usage_errors(
    arguments: list[str], message: str
) -> None:
    result = CliRunner().invoke(app, arguments, env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert message in result.output
