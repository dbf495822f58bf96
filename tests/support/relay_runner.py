"""Run the relay of :mod:`tests.support.relay_app` in a process of its own.

``python -m tests.support.relay_runner`` - like ``tidings relay`` but with a short lease
(``TIDINGS_RELAY_TEST_LEASE_TTL`` seconds) so that a relay restarted after SIGKILL takes
over within a second: the CLI has no option for the lease TTL. SIGTERM stops it
gracefully. It prints ``relaying`` once the relay task is running.
"""

from __future__ import annotations

import asyncio
import os
import signal

from tests.support import relay_app
from tidings.outbox import Relay

LEASE_TTL_ENV = "TIDINGS_RELAY_TEST_LEASE_TTL"
BATCH_SIZE_ENV = "TIDINGS_RELAY_TEST_BATCH_SIZE"


async def main() -> None:
    relay = Relay(
        relay_app.context(),
        batch_size=int(os.environ.get(BATCH_SIZE_ENV, "500")),
        lease_ttl=float(os.environ.get(LEASE_TTL_ENV, "1.0")),
        max_idle_interval=0.2,
        complete_after_commit=False,
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(relay.stop()))
    print("relaying", flush=True)
    try:
        await relay.run()
    finally:
        await relay.context.adispose()
    print(f"stopped after {relay.stats.published} events", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
