"""tidings.testing: a kit for testing your own contexts (a pytest plugin too).

- :func:`published`, :func:`assert_published`, :func:`assert_nothing_published`: what a
  use case put in a context's outbox, as contracts.
- :func:`deliver`: relay and consume between contexts in one process until quiet.
- :class:`Scenario`: Given integration events / When a use case runs / Then these
  events were published and these effects happened, across contexts.
- :func:`deterministic`: a controlled clock and predictable ids.
- Faults: :class:`TcpProxy` (cut and restore any connection), crash points
  (:class:`CrashAfterConfirm`, :class:`CrashInHandler`, :func:`kill_now`) and
  :func:`run_chaos`.

The pytest plugin (registered on install) adds the fixtures ``tidings_broker_url``,
``tidings_context`` and ``tidings_clock``; see ``docs/testing.md``.
"""

from tidings.testing.chaos import ChaosReport, run_chaos
from tidings.testing.crash import CrashAfterConfirm, CrashInHandler, kill_now
from tidings.testing.delivery import DeliveryReport, deliver
from tidings.testing.determinism import TestClock, deterministic
from tidings.testing.published import (
    PublishedEvents,
    assert_nothing_published,
    assert_published,
    outbox_mark,
    published,
)
from tidings.testing.scenario import Scenario
from tidings.testing.tcp_proxy import TcpProxy

__all__ = [
    "ChaosReport",
    "CrashAfterConfirm",
    "CrashInHandler",
    "DeliveryReport",
    "PublishedEvents",
    "Scenario",
    "TcpProxy",
    "TestClock",
    "assert_nothing_published",
    "assert_published",
    "deliver",
    "deterministic",
    "kill_now",
    "outbox_mark",
    "published",
    "run_chaos",
]
