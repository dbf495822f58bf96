"""NATS test streams: a transport on a stream of its own, the stream deleted afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import nats

from tidings.transports.nats import NatsTransport


@contextlib.asynccontextmanager
async def transport_on_own_stream(
    url: str, server_url: str, stream: str
) -> AsyncIterator[NatsTransport]:
    """A connected :class:`NatsTransport` for ``url``; ``stream`` is deleted after it closed."""
    transport = NatsTransport(url)
    await transport.connect()
    try:
        yield transport
    finally:
        await transport.close()
        client = await nats.connect(server_url)
        try:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await client.jetstream().delete_stream(stream)
        finally:
            await client.close()
