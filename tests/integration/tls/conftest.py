"""Session-scoped TLS endpoints: one stunnel per wrapped service, a private NATS,
PostgreSQL and Tansu, all on ports of their own (see ``tests/support/tls_endpoints``)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import SERVICES, require
from tests.support import tls_endpoints
from tests.support.tls_endpoints import Certificates


@pytest.fixture(scope="session")
def certs() -> Iterator[Certificates]:
    # Not pytest's tmp_path: the private PostgreSQL runs as the postgres user, which
    # must be able to read the certificates.
    folder = Path(tempfile.mkdtemp(prefix="tidings-tls-"))
    folder.chmod(0o755)
    try:
        yield tls_endpoints.make_certificates(folder / "pki")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _wrapped(certs: Certificates, service: str) -> Iterator[int]:
    require(service)
    plain = SERVICES[service][1]
    tls_port = tls_endpoints.free_port()
    with tls_endpoints.stunnel(certs, {service: (tls_port, plain)}, name=service):
        yield tls_port


@pytest.fixture(scope="session")
def rabbitmq_tls_port(certs: Certificates) -> Iterator[int]:
    """stunnel in front of the shared RabbitMQ."""
    yield from _wrapped(certs, "rabbitmq")


@pytest.fixture(scope="session")
def redis_tls_port(certs: Certificates) -> Iterator[int]:
    """stunnel in front of the shared Redis."""
    yield from _wrapped(certs, "redis")


@pytest.fixture(scope="session")
def kafka_tls_port(certs: Certificates) -> Iterator[int]:
    """A private Tansu advertising the port of the stunnel in front of it."""
    tls_port = tls_endpoints.free_port()
    with (
        tls_endpoints.tansu(tls_port, certs.folder) as plain,
        tls_endpoints.stunnel(certs, {"kafka": (tls_port, plain)}, name="kafka"),
    ):
        yield tls_port


@pytest.fixture(scope="session")
def nats_tls_port(certs: Certificates) -> Iterator[int]:
    with tls_endpoints.nats_server(certs) as port:
        yield port


@pytest.fixture(scope="session")
def postgres_tls_port(certs: Certificates) -> Iterator[int]:
    with tls_endpoints.postgres_server(certs) as port:
        yield port
