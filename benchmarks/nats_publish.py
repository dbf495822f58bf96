"""The NATS transport's publishing cost per event, against nats-py's ``publish_async``.

In one process, on the real server, rounds interleaved, best round of each side:

* ``raw``: ``relay.py``'s baseline. Pre-encoded messages (``encode_batch``, outside the
  clock), JetStream ``publish_async`` per message with ``stream=``, then the
  acknowledgements awaited together, 500 at a time.
* ``publish_async``: the same calls with the encoding inside the clock: what the
  transport did per batch before it published through ``Client.publish``.
* ``transport``: ``NatsTransport.publish_batch``, 500 events at a time (encoding,
  interest check, publishing, every acknowledgement awaited).

Each figure is microseconds per event, wall clock and this process's CPU time (the
server runs on the same machine; its share is in the wall clock only). The last line
is one JSON object: the figures and ``transport_over_raw`` / ``transport_over_publish_async``
(time ratios: below 1 the transport is faster).

    python benchmarks/nats_publish.py            # 20 batches of 500, 5 rounds
    python benchmarks/nats_publish.py --smoke    # 2 batches, 1 round: it runs
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from _harness import emit, reachable, remove_broker_state
from _relay_common import KEYS, SOURCE, ThingUpdatedIntegrationEvent
from tidings.contracts.cloudevents import CloudEvent
from tidings.domain.ids import uuid7

BATCH = 500
GROUP = "bench-nats-publish"


def make_batch(first: int) -> list[CloudEvent]:
    """Events shaped like the relay's: a fresh id each (JetStream dedupes by it)."""
    now = datetime.now(UTC).isoformat()
    return [
        CloudEvent(
            id=str(uuid7()),
            source=SOURCE,
            type=ThingUpdatedIntegrationEvent.event_type,
            time=now,
            subject=f"thing-{seq % KEYS}",
            correlationid=str(uuid7()),
            data_json=(
                f'{{"thing_id":"thing-{seq % KEYS}","seq":{seq},'
                '"name":"Desk lamp with a long enough name"}'
            ).encode(),
        )
        for seq in range(first, first + BATCH)
    ]


#: Seconds of wall clock and of this process's CPU.
Clocks = tuple[float, float]
Side = Callable[[list[CloudEvent]], Awaitable[Clocks]]


async def timed(work: Awaitable[object]) -> Clocks:
    """How long awaiting ``work`` took, by both clocks."""
    wall, cpu = time.perf_counter(), time.process_time()
    await work
    return time.perf_counter() - wall, time.process_time() - cpu


async def measure(url: str, batches: int, rounds: int) -> dict[str, float]:
    import nats

    from tidings.transports.nats import NatsTransport
    from tidings.transports.nats_publish import Message, encode_batch

    transport = NatsTransport(url)
    await transport.declare_subscription(GROUP, {ThingUpdatedIntegrationEvent.event_type})
    options = transport.options
    client = await nats.connect(url.split("?")[0])
    js = client.jetstream()

    async def publish_messages(messages: list[Message]) -> None:
        acks = [
            await js.publish_async(subject, body, headers=headers, stream=options.stream)
            for subject, headers, body in messages
        ]
        await asyncio.gather(*acks)

    async def raw(events: list[CloudEvent]) -> Clocks:
        # Encoded before the clocks start, as relay.py's baseline.
        messages = encode_batch(options.subject_prefix, SOURCE, events)
        return await timed(publish_messages(messages))

    async def publish_async(events: list[CloudEvent]) -> Clocks:
        return await timed(publish_messages(encode_batch(options.subject_prefix, SOURCE, events)))

    async def through_transport(events: list[CloudEvent]) -> Clocks:
        return await timed(transport.publish_batch(SOURCE, events))

    sides: dict[str, Side] = {
        "raw": raw,
        "publish_async": publish_async,
        "transport": through_transport,
    }
    await transport.publish_batch(SOURCE, make_batch(0))  # the interest check's round trip
    best = {f"{name}_{clock}": float("inf") for name in sides for clock in ("us", "cpu_us")}
    sequence = BATCH
    try:
        for round_number in range(1, rounds + 1):
            for name, side in sides.items():
                work = [make_batch(sequence + index * BATCH) for index in range(batches)]
                sequence += batches * BATCH
                wall = cpu = 0.0
                for events in work:
                    batch_wall, batch_cpu = await side(events)
                    wall, cpu = wall + batch_wall, cpu + batch_cpu
                count = batches * BATCH
                best[f"{name}_us"] = min(best[f"{name}_us"], wall / count * 1e6)
                best[f"{name}_cpu_us"] = min(best[f"{name}_cpu_us"], cpu / count * 1e6)
            line = ", ".join(f"{name} {best[f'{name}_us']:.1f} µs" for name in sides)
            print(f"  round {round_number}: best so far {line}", flush=True)
    finally:
        await client.close()
        await transport.close()
        await remove_broker_state(url, [GROUP])
    best["transport_over_raw"] = best["transport_us"] / best["raw_us"]
    best["transport_over_publish_async"] = best["transport_us"] / best["publish_async_us"]
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="2 batches, 1 round: it runs")
    parser.add_argument("--batches", type=int, help="batches of 500 per side and round")
    parser.add_argument("--rounds", type=int)
    arguments = parser.parse_args()
    batches = arguments.batches or (2 if arguments.smoke else 20)
    rounds = arguments.rounds or (1 if arguments.smoke else 5)
    if not reachable(4222):
        parser.exit(1, "NATS is unreachable at 127.0.0.1:4222\n")
    tag = uuid7().hex[:8]
    url = f"nats://127.0.0.1:4222?stream=TIDINGS_PUB_{tag}&subject_prefix=tidings_pub_{tag}"
    figures = asyncio.run(measure(url, batches, rounds))
    for key, value in sorted(figures.items()):
        print(f"{key}: {value:.2f}")
    emit({key: round(value, 3) for key, value in figures.items()})


if __name__ == "__main__":
    main()
