"""Where the real services of the integration tests are, and what to do if one is down.

On a developer's laptop a missing service skips the tests that need it, with the
reason; under CI (``CI=true``) a missing service fails them, because a silent skip
would let an untested guarantee pass as tested.
"""

from __future__ import annotations

import os
import socket

import pytest

SERVICES: dict[str, tuple[str, int, str]] = {
    "postgres": ("127.0.0.1", 5432, "postgresql://postgres@127.0.0.1:5432/test"),
    "mariadb": ("127.0.0.1", 3306, "mysql://root@127.0.0.1:3306/test"),
    "rabbitmq": ("127.0.0.1", 5672, "amqp://guest:guest@127.0.0.1:5672/"),
    "redis": ("127.0.0.1", 6379, "redis://127.0.0.1:6379/0"),
    "nats": ("127.0.0.1", 4222, "nats://127.0.0.1:4222"),
    "kafka": ("127.0.0.1", 9092, "kafka://127.0.0.1:9092"),
    # Google's Pub/Sub emulator (.ci/services/pubsub.sh); the project name is free.
    "pubsub": ("127.0.0.1", 8085, "pubsub://tidings-test?emulator=127.0.0.1:8085"),
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require(name: str) -> str:
    """The URL of service ``name``; skips (or fails under CI) when it is unreachable."""
    host, port, url = SERVICES[name]
    env_url = os.environ.get(f"TIDINGS_TEST_{name.upper()}_URL")
    if reachable(host, port):
        return env_url or url
    message = f"{name} is not reachable on {host}:{port}"
    if in_ci():
        pytest.fail(f"{message}; CI=true requires every service (.ci/run starts them)")
    pytest.skip(f"{message}; start it to run this test")
