"""The NATS transport's connection: connecting, TLS checks, reconnect callbacks.

nats-py retries a refused first connection until a timeout and upgrades to TLS only
when the server's INFO asks for it; :class:`Connection` fails a refused certificate at
once and refuses a connection left in clear text when the URL asks for TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from tidings.errors import TlsError
from tidings.tls import tls_failure
from tidings.transports.base import TransportError
from tidings.transports.nats_options import NatsOptions
from tidings.transports.nats_publish import BROKER_ERRORS

log = logging.getLogger("tidings.transports.nats")

# While closing, a cancelled flush is just as final as a broker error.
CLOSE_ERRORS: tuple[type[BaseException], ...] = (*BROKER_ERRORS, asyncio.CancelledError)
CLOSE_TIMEOUT = 2.0


class Connection:
    """One nats-py client (opened on demand, again after it closed) and its JetStream."""

    def __init__(self, servers: list[str], options: NatsOptions, where: str) -> None:
        self._servers = servers
        self._options = options
        self._where = where
        self._ssl_context: ssl.SSLContext | None = (
            options.tls.context() if options.tls is not None else None
        )
        self.client: NatsClient | None = None
        self.js: JetStreamContext | None = None
        self._last_error: Exception | None = None
        # Resolved when the first connection's TLS handshake is refused (see open).
        self._tls_refused: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> tuple[JetStreamContext, bool]:
        """The JetStream context, and whether the connection is new (just opened)."""
        async with self._lock:
            if self.client is not None and not self.client.is_closed and self.js is not None:
                return self.js, False
            self._last_error = None
            self._tls_refused = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(self._options.connect_timeout):
                    client = await self._first_connection(self._tls_refused)
            except BROKER_ERRORS as exc:  # NoServersError is a nats.errors.Error
                # nats-py keeps retrying a refused first connection until our timeout:
                # the error it reported on the way says more than the timeout.
                reason = self._last_error or exc
                refused = tls_failure(reason, self._where)
                if refused is not None:
                    raise refused from exc
                raise TransportError(
                    f"cannot connect to NATS at {self._where}: {reason!r}; check that the "
                    "server runs with JetStream enabled; the relay retries with backoff "
                    "and nothing is lost meanwhile"
                ) from exc
            self.client = client
            self.js = client.jetstream(timeout=self._options.confirm_timeout)
            return self.js, True

    async def close(self) -> None:
        """Close the client (flushing what it buffered), giving up after a moment."""
        client, self.client, self.js = self.client, None, None
        if client is not None and not client.is_closed:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await client.close()
            except CLOSE_ERRORS:
                pass  # the server is gone; nothing of ours is left to flush

    def jetstream(self) -> JetStreamContext:
        """The open connection's JetStream context; raises when not connected."""
        if self.js is None:
            raise TransportError(f"not connected to NATS at {self._where}; connect first")
        return self.js

    async def _first_connection(self, tls_refused: asyncio.Future[None]) -> NatsClient:
        """``nats.connect``, given up as soon as the server's certificate is refused:
        nats-py would keep retrying a certificate that cannot verify until the timeout."""
        connecting = asyncio.ensure_future(
            nats.connect(
                servers=self._servers,
                connect_timeout=max(1, round(self._options.connect_timeout)),
                # Fail a first connection at once; once connected, keep reconnecting in
                # the background (publish_batch refuses to buffer while it does).
                max_reconnect_attempts=-1,
                allow_reconnect=True,
                error_cb=self._on_client_error,
                reconnected_cb=self._on_reconnected,
                tls=self._ssl_context,
            )
        )
        try:
            either: set[asyncio.Future[Any]] = {connecting, tls_refused}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not connecting.done():
                connecting.cancel()
                with contextlib.suppress(asyncio.CancelledError, *BROKER_ERRORS):
                    await connecting
        if not connecting.done() or connecting.cancelled():
            raise nats.errors.NoServersError  # the TLS failure in _last_error says why
        client: NatsClient = connecting.result()
        if not self._encrypted(client):
            await client.close()
            raise TlsError(
                f"the NATS server at {self._where} did not offer TLS, and the URL asks for "
                "it (?tls=true, ?ca= or ?cert=): enable TLS on the server, or check that the "
                "URL names the right server"
            )
        return client

    def _encrypted(self, client: NatsClient) -> bool:
        """False when TLS is wanted but the connection is in clear text: nats-py upgrades
        only when the server's INFO says ``tls_required``, so a server without TLS (or
        a network that rewrites INFO) would otherwise get the connection unencrypted."""
        info: dict[str, Any] = getattr(client, "_server_info", {})
        return self._ssl_context is None or bool(info.get("tls_required"))

    async def _on_reconnected(self) -> None:
        client = self.client
        if client is not None and not self._encrypted(client):
            log.error("NATS at %s reconnected without TLS; closing the connection", self._where)
            await client.close()

    async def _on_client_error(self, exc: Exception) -> None:
        # nats-py reports connection attempts here; operations raise on their own.
        self._last_error = exc
        log.debug("NATS client error: %r", exc)
        refused = self._tls_refused
        if refused is not None and not refused.done() and tls_failure(exc, self._where):
            refused.set_result(None)
