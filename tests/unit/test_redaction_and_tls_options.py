"""redact() masks URL passwords and secret options; TLS options parse the same everywhere."""

from __future__ import annotations

import pytest

from tidings import BoundedContext
from tidings.errors import ConfigurationError, TidingsError
from tidings.persistence.engines import asyncpg_tls, parse_database_url
from tidings.redaction import redact
from tidings.tls import TlsSettings
from tidings.transports import open_transport


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("amqp://guest:hunter2@host:5672/", "amqp://guest:***@host:5672/"),
        ("redis://:hunter2@host/0", "redis://:***@host/0"),
        ("at postgresql+psycopg://u:hunter2@h/db", "at postgresql+psycopg://u:***@h/db"),
        ("nats://h?token=hunter2&tls=true", "nats://h?token=***&tls=true"),
        ("kafka://h?sasl_plain_password=hunter2", "kafka://h?sasl_plain_password=***"),
        ("x://h/?apikey=hunter2", "x://h/?apikey=***"),
        ("sqlite:///file.db", "sqlite:///file.db"),
    ],
)  # fmt: skip
def test_redact_masks_passwords_and_secret_options(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_errors_contexts_and_transports_never_show_the_password() -> None:
    assert "hunter2" not in str(TidingsError("cannot reach amqp://u:hunter2@h/"))
    context = BoundedContext(
        "catalog", database_url="sqlite:///:memory:", broker_url="amqp://u:hunter2@h/"
    )
    assert "hunter2" not in repr(context)
    assert "hunter2" not in repr(open_transport("redis://default:hunter2@127.0.0.1:6379/0"))


def test_tls_settings_split_off_the_query() -> None:
    settings, rest = TlsSettings.split([("ca", "a.pem"), ("stream", "s"), ("cert", "c.pem")])
    assert settings == TlsSettings(ca="a.pem", cert="c.pem")
    assert rest == [("stream", "s")]
    with pytest.raises(ConfigurationError, match=r"\?key= needs \?cert="):
        TlsSettings.split([("key", "k.pem")])


def test_a_missing_certificate_file_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="is not a readable file"):
        open_transport("amqps://h/?ca=/nonexistent/ca.pem")


def test_postgres_short_tls_options_become_libpq_ones() -> None:
    url = parse_database_url("postgresql://u@h/db?ca=/ca.pem&cert=/c.pem&key=/k.pem")
    assert dict(url.query) == {
        "sslrootcert": "/ca.pem",
        "sslcert": "/c.pem",
        "sslkey": "/k.pem",
        "sslmode": "verify-full",
    }
    with pytest.raises(ConfigurationError, match="TLS options of PostgreSQL"):
        parse_database_url("mysql://u@h/db?ca=/ca.pem")


def test_asyncpg_gets_an_ssl_argument_for_the_libpq_mode() -> None:
    params: dict[str, object] = {"sslmode": "prefer", "host": "h"}
    asyncpg_tls(params)
    assert params == {"ssl": "prefer", "host": "h"}
    with pytest.raises(ConfigurationError, match="unknown sslmode"):
        asyncpg_tls({"sslmode": "verify-everything"})
