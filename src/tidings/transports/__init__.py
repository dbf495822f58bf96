"""Broker transports, one module per broker, chosen by URL."""

from tidings.transports.base import Delivery, PublishNotConfirmedError, Transport, TransportError
from tidings.transports.registry import open_transport

__all__ = ["Delivery", "PublishNotConfirmedError", "Transport", "TransportError", "open_transport"]
