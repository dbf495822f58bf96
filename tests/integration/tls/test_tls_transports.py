"""Every broker transport over TLS, against real TLS endpoints the session starts:
an event makes the round trip with a client certificate, and a wrong CA or a host
name the server's certificate does not carry fails fast with a TlsError naming it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.integration.transports import conformance
from tests.services import require
from tests.support.tcp_proxy import TcpProxy
from tests.support.tls_endpoints import Certificates
from tidings.domain.ids import uuid7
from tidings.errors import ConfigurationError, TlsError
from tidings.transports import open_transport

# A wrong certificate must be refused in seconds, never waited on.
FAIL_FAST_SECONDS = 10.0


@dataclass(frozen=True)
class Endpoint:
    """How one transport's TLS URL is written, for a host:port and a TLS query."""

    port: int
    url: Callable[[str, str], str]


@pytest.fixture(params=["rabbitmq", "redis", "nats", "kafka"])
def endpoint(request: pytest.FixtureRequest) -> Endpoint:
    name = request.param
    port: int = request.getfixturevalue(f"{name}_tls_port")
    suffix = uuid7().hex
    urls: dict[str, Callable[[str, str], str]] = {
        "rabbitmq": lambda where, tls: (
            f"amqps://guest:guest@{where}/?{tls}&exchange=tidings.tls.{suffix}"
        ),
        "redis": lambda where, tls: (
            f"rediss://{where}/0?{tls}&stream=tidings:tls:{suffix}&block_ms=200"
        ),
        "nats": lambda where, tls: f"nats://{where}?tls=true&{tls}&stream=TLS_{suffix}",
        "kafka": lambda where, tls: f"kafkas://{where}?{tls}&topic=tidings.tls.{suffix}",
    }
    return Endpoint(port, urls[name])


async def test_an_event_makes_the_round_trip_over_tls(
    endpoint: Endpoint, certs: Certificates
) -> None:
    url = endpoint.url(f"127.0.0.1:{endpoint.port}", certs.query())
    group = f"tls-{uuid7().hex[:12]}"
    sent = conformance.make_events(3, 1, "catalog.price_changed", "catalog")
    async with open_transport(url) as transport:
        await transport.declare_subscription(group, {"catalog.price_changed"})
        await transport.publish_batch("catalog", sent)
        received = await conformance.collect(
            transport, group, {"catalog.price_changed"}, len(sent), timeout=60
        )
        await transport.delete_subscription(group)
    conformance.assert_complete_and_ordered(sent, received)


async def test_a_server_certificate_from_another_ca_is_refused_fast(
    endpoint: Endpoint, certs: Certificates
) -> None:
    url = endpoint.url(f"127.0.0.1:{endpoint.port}", certs.query(ca=certs.wrong_ca))
    started = time.monotonic()
    with pytest.raises(TlsError, match=r"TLS certificate verification failed .*\?ca="):
        async with open_transport(url):
            pass
    assert time.monotonic() - started < FAIL_FAST_SECONDS


async def test_a_host_name_the_certificate_does_not_carry_is_refused_fast(
    endpoint: Endpoint, certs: Certificates
) -> None:
    # 127.0.0.2 reaches the same server, but its certificate names only
    # localhost and 127.0.0.1.
    async with TcpProxy("127.0.0.1", endpoint.port, listen_host="127.0.0.2") as proxy:
        url = endpoint.url(f"127.0.0.2:{proxy.port}", certs.query())
        started = time.monotonic()
        with pytest.raises(TlsError, match=r"TLS host name check failed for 127\.0\.0\.2"):
            async with open_transport(url):
                pass
    assert time.monotonic() - started < FAIL_FAST_SECONDS


async def test_tls_options_on_a_plain_url_are_refused(certs: Certificates) -> None:
    for url in (
        f"amqp://127.0.0.1:5672/?{certs.query()}",
        f"redis://127.0.0.1:6379/0?{certs.query()}",
        f"kafka://127.0.0.1:9092?{certs.query()}",
    ):
        with pytest.raises(ConfigurationError, match="need TLS"):
            open_transport(url)


async def test_nats_refuses_a_server_that_does_not_offer_tls(certs: Certificates) -> None:
    # nats-py upgrades only when the server asks to: without this check a URL asking
    # for TLS would talk to the plain shared server in clear text.
    plain = require("nats")
    with pytest.raises(TlsError, match="did not offer TLS"):
        async with open_transport(f"{plain}?tls=true&{certs.query()}"):
            pass
