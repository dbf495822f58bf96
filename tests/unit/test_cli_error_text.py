"""Error messages reach the terminal whole: rich markup must not eat what they quote."""

from __future__ import annotations

import pytest

import tidings.cli.app as cli
from tidings.errors import MissingExtraError


def test_an_error_naming_an_extra_keeps_its_brackets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing() -> None:
        raise MissingExtraError("--metrics-port", "metrics")

    monkeypatch.setattr(cli, "app", failing)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()

    assert exit_info.value.code == 2
    assert "pip install 'tidings[metrics]'" in capsys.readouterr().err
