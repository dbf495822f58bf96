"""TLS settings shared by every broker and database URL: ``?ca=``, ``?cert=``, ``?key=``.

Every TLS connection tidings opens verifies the server: its certificate must chain to
a trusted CA (the file named by ``?ca=``, else the system's store) and be issued for
the host name (or IP address) the URL connects to. There is no option to turn that
off. ``?cert=`` and ``?key=`` (PEM files) present a client certificate to servers
that ask for one; ``?key=`` may be left out when the key is inside the ``?cert=`` file.

Which URLs use TLS is each transport's business (``amqps://``, ``rediss://``,
``nats://…?tls=true``, ``kafkas://``, PostgreSQL ``?sslmode=verify-full``; see
``docs/tls.md``); this module parses the three options, builds the
:class:`ssl.SSLContext` and turns a failed handshake into a :class:`TlsError` that says
which of them to fix.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterable
from dataclasses import dataclass

from tidings.errors import ConfigurationError, TlsError

#: The URL query options read by :meth:`TlsSettings.split`.
TLS_OPTIONS = ("ca", "cert", "key")

# OpenSSL's verification codes for a certificate issued for another host / address.
_NAME_MISMATCH = {62, 64}


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """The CA file and client certificate of one URL (all optional)."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    @classmethod
    def split(cls, query: Iterable[tuple[str, str]]) -> tuple[TlsSettings, list[tuple[str, str]]]:
        """The TLS settings found in ``query`` and the query pairs left for the client."""
        found: dict[str, str] = {}
        rest: list[tuple[str, str]] = []
        for name, value in query:
            if name in TLS_OPTIONS:
                found[name] = value
            else:
                rest.append((name, value))
        settings = cls(**found)
        if settings.key and not settings.cert:
            raise ConfigurationError("?key= needs ?cert=: name the client certificate too")
        return settings, rest

    @property
    def given(self) -> bool:
        """True when the URL names a CA or a client certificate."""
        return bool(self.ca or self.cert)

    def check_files(self) -> None:
        """Raise :class:`ConfigurationError` if a named file does not exist."""
        for option, path in (("ca", self.ca), ("cert", self.cert), ("key", self.key)):
            if path and not os.path.isfile(path):
                raise ConfigurationError(f"?{option}={path} is not a readable file")

    def context(self) -> ssl.SSLContext:
        """A client context that verifies the server's certificate and host name."""
        self.check_files()
        try:
            context = ssl.create_default_context(cafile=self.ca)
        except ssl.SSLError as exc:
            raise TlsError(f"?ca={self.ca} holds no usable PEM certificate: {exc}") from exc
        if self.cert:
            try:
                context.load_cert_chain(self.cert, self.key)
            except ssl.SSLError as exc:
                raise TlsError(
                    f"cannot use the client certificate ?cert={self.cert} "
                    f"(key {self.key or 'in the same file'}): {exc}; both must be PEM "
                    "and the key must match the certificate"
                ) from exc
        return context


def tls_failure(error: BaseException, where: str) -> TlsError | None:
    """A :class:`TlsError` saying what to fix, if ``error`` (or what caused it) is a
    failed TLS handshake with ``where`` (host:port); else None."""
    cause = _ssl_cause(error)
    if cause is None:
        # libpq (psycopg) verifies inside C and reports only text.
        text = str(error).strip()
        if "does not match host name" in text:
            return _name_mismatch(where, text)
        if "certificate verify failed" in text:
            return _untrusted(where, text)
        return None
    if isinstance(cause, ssl.SSLCertVerificationError):
        detail = cause.verify_message or str(cause)
        if cause.verify_code in _NAME_MISMATCH:
            return _name_mismatch(where, detail)
        return _untrusted(where, detail)
    return TlsError(
        f"TLS handshake with {where} failed: {cause}; check that the server speaks TLS "
        "on this port and accepts the client certificate (?cert=, ?key=) if it asks for one"
    )


def _name_mismatch(where: str, detail: str) -> TlsError:
    return TlsError(
        f"TLS host name check failed for {where}: {detail}; the server's certificate was "
        "issued for another name: connect with a host name the certificate names, or "
        "give the server a certificate for this one"
    )


def _untrusted(where: str, detail: str) -> TlsError:
    return TlsError(
        f"TLS certificate verification failed for {where}: {detail}; check that ?ca= "
        "names the CA file that signed the server's certificate"
    )


def _ssl_cause(error: BaseException) -> ssl.SSLError | None:
    """The :class:`ssl.SSLError` behind ``error``: itself, its cause or context chain,
    or an exception among its arguments (how some clients wrap what they caught)."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLError):
            return current
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return None
