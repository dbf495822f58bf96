"""Broker transports, one module per broker, chosen by URL."""

from tidings.transports.base import (
    NOTHING_UNROUTABLE,
    Delivery,
    PublishNotConfirmedError,
    Transport,
    TransportError,
    Unroutable,
)
from tidings.transports.registry import open_transport

__all__ = [
    "NOTHING_UNROUTABLE",
    "Delivery",
    "PublishNotConfirmedError",
    "Transport",
    "TransportError",
    "Unroutable",
    "open_transport",
]
