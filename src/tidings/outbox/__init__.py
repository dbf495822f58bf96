"""The outbox relay: from each context's outbox to the broker."""

from tidings.outbox.relay import Relay
from tidings.outbox.stats import RelayStats
from tidings.outbox.store import OutboxStatus, OutboxStore, Retention

__all__ = ["OutboxStatus", "OutboxStore", "Relay", "RelayStats", "Retention"]
