"""Choosing a transport by URL, and setting its prefetch option (``tidings consume --prefetch``)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from tidings.errors import ConfigurationError
from tidings.transports import open_transport
from tidings.transports.registry import PREFETCH_OPTIONS, with_prefetch


def _query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


@pytest.mark.parametrize(
    ("url", "option"),
    [
        ("amqp://guest:guest@127.0.0.1:5672/?exchange=shop", "prefetch"),
        ("nats://127.0.0.1:4222", "prefetch"),
        ("pubsub://demo", "prefetch"),
        ("memory://", "prefetch"),
        ("redis://127.0.0.1:6379/0", "count"),
        ("kafka://127.0.0.1:9092", "fetch_count"),
        ("sqlite:///broker.db", "max_unacked"),
    ],
)
def test_prefetch_sets_the_transports_own_option_and_keeps_the_others(
    url: str, option: str
) -> None:
    changed = with_prefetch(url, 64)
    assert _query(changed)[option] == "64"
    assert {k: v for k, v in _query(changed).items() if k != option} == _query(url)
    assert urlsplit(changed).netloc == urlsplit(url).netloc


def test_prefetch_replaces_a_value_the_url_had() -> None:
    changed = with_prefetch("amqp://127.0.0.1/?prefetch=10&exchange=x", 300)
    assert parse_qsl(urlsplit(changed).query).count(("prefetch", "300")) == 1
    assert "prefetch=10&" not in changed


def test_the_option_set_is_one_the_transport_accepts() -> None:
    transport = open_transport(with_prefetch("redis://127.0.0.1:6379/0", 7))
    assert transport.options.count == 7  # type: ignore[attr-defined]


def test_every_scheme_has_a_prefetch_option() -> None:
    from tidings.transports.registry import _TRANSPORTS

    assert set(PREFETCH_OPTIONS) == set(_TRANSPORTS)


@pytest.mark.parametrize("url", ["ftp://example.org", "amqp://127.0.0.1/"])
def test_a_bad_prefetch_or_scheme_is_a_clear_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        with_prefetch(url, 0 if url.startswith("amqp") else 5)


def test_the_process_commands_offer_the_speed_settings_and_refuse_nonsense() -> None:
    from typer.testing import CliRunner

    from tidings.cli.app import app

    runner = CliRunner()
    wide = {"COLUMNS": "200"}
    for command, options in (
        ("relay", ("--batch-size", "--max-poll-interval")),
        ("consume", ("--batch-size", "--prefetch")),
        ("run", ("--batch-size", "--prefetch", "--relay-batch-size", "--max-poll-interval")),
    ):
        shown = runner.invoke(app, [command, "--help"], env=wide).output
        assert all(option in shown for option in options), command
    for command, option, value in (
        ("consume", "--prefetch", "0"),
        ("run", "--prefetch", "0"),
        ("relay", "--max-poll-interval", "0"),
        # Past the relay's and consumer's limit (10,000): a usage error, not a traceback.
        ("relay", "--batch-size", "0"),
        ("relay", "--batch-size", "10001"),
        ("consume", "--batch-size", "10001"),
        ("run", "--batch-size", "10001"),
        ("run", "--relay-batch-size", "10001"),
        ("relay", "--retention", "bogus"),
        ("relay", "--lease-ttl", "0"),
    ):
        result = runner.invoke(app, [command, "some.module:context", option, value], env=wide)
        assert result.exit_code == 2, (command, result.output)
        assert option in result.output
