"""The bridge between google-cloud-pubsub's threads and asyncio, for the Pub/Sub transport.

The client completes publish futures and runs its streaming pull on threads of its own.
:func:`all_done` waits for a whole batch of futures with one wake-up of the event loop;
:class:`LoopScheduler` replaces the client's thread-pool scheduler so that received
messages go straight from the stream thread to the event loop, where
:class:`StreamingPull` hands them out as deliveries and gives back what is left.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.api_core import exceptions as google_errors
from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.subscriber.message import Message
from google.cloud.pubsub_v1.subscriber.scheduler import Scheduler

from tidings.transports.base import Delivery, Transport, TransportError

#: The message attribute carrying the CloudEvents type (binary mode, ``ce-`` prefix).
TYPE_ATTRIBUTE = "ce-type"
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    google_errors.GoogleAPIError,
    grpc.RpcError,
    OSError,
    TimeoutError,
)


class StreamingPull:
    """Messages of one streaming pull, moved from the client's thread to the event loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        admitted: frozenset[str],
        transport: Transport,
        path: str,
        subscriber: pubsub_v1.SubscriberClient,
        timeout: float,
    ) -> None:
        self.scheduler = LoopScheduler(loop)
        self._admitted = admitted
        self._transport = transport
        self._path = path
        self._subscriber = subscriber
        self._timeout = timeout
        self._outstanding: dict[str, Message] = {}

    async def take(self, limit: int) -> list[Delivery]:
        """At least one admitted delivery, at most ``limit``; raises when the stream ended."""
        while True:
            messages = await self.scheduler.take(limit)
            batch: list[Delivery] = []
            for message in messages:
                if message.attributes.get(TYPE_ATTRIBUTE) not in self._admitted:
                    message.ack()  # what the subscription's filter does on Google's side
                    continue
                token = DeliveryToken(message, self)
                routed = message.attributes.get(TYPE_ATTRIBUTE)
                self._outstanding[message.ack_id] = message
                batch.append(
                    Delivery(
                        body=message.data,
                        headers=dict(message.attributes),
                        # The attribute the subscription's filter matched.
                        routed_type=routed,
                        _transport_token=token,
                        _transport=self._transport,
                    )
                )
            if batch:
                return batch

    async def nack(self, messages: Sequence[Message]) -> None:
        """Make ``messages`` come again now.

        ``Message.nack`` alone is queued for the client's dispatcher and is lost if the
        stream closes first (the message would then wait for its ack deadline), so the
        deadline is also set to zero by a direct call.
        """
        if not messages:
            return
        ack_ids = []
        for message in messages:
            self._outstanding.pop(message.ack_id, None)
            message.nack()  # stops the client extending its lease
            ack_ids.append(message.ack_id)
        with contextlib.suppress(*BROKER_ERRORS):
            await asyncio.to_thread(
                self._subscriber.modify_ack_deadline,
                subscription=self._path,
                ack_ids=ack_ids,
                ack_deadline_seconds=0,
                retry=None,
                timeout=self._timeout,
            )

    async def give_back(self) -> None:
        """Nack what arrived but was not settled (handed out or not), so it comes again."""
        await self.nack([*self._outstanding.values(), *self.scheduler.drain()])


@dataclass(slots=True)
class DeliveryToken:
    """A handed-out message and the stream's register of unsettled ones."""

    message: Message
    stream: StreamingPull

    def ack(self) -> None:
        if self.stream._outstanding.pop(self.message.ack_id, None) is not None:
            self.message.ack()  # else settled already, or given back at close


class LoopScheduler(Scheduler):  # type: ignore[misc]
    """A scheduler for the client's streaming pull that queues messages for asyncio.

    The client calls :meth:`schedule` from its stream thread for every message it
    releases; instead of running a callback in a thread pool, the message is queued
    and the event loop is woken once per burst (not once per message).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()
        self._messages: collections.deque[Message] = collections.deque()
        self._wake_pending = False
        self._ready = asyncio.Event()
        self._error: BaseException | None = None
        self._ended = False

    @property
    def queue(self) -> Any:
        return self._queue

    def schedule(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        with self._lock:
            self._messages.append(args[0])
            if self._wake_pending:
                return
            self._wake_pending = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self._loop.call_soon_threadsafe(self._ready.set)

    def shutdown(self, await_msg_callbacks: bool = False) -> list[Message]:
        return self.drain()  # not handed out: the client nacks them

    def ended(self, future: Any) -> None:
        """The streaming pull future finished (cancelled, or failed for good)."""
        error = None if future.cancelled() else future.exception()
        with self._lock:
            self._ended = True
            self._error = error
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._ready.set)

    async def take(self, limit: int) -> list[Message]:
        while True:
            with self._lock:
                if self._messages:
                    count = min(limit, len(self._messages))
                    taken = [self._messages.popleft() for _ in range(count)]
                    if not self._messages:
                        self._wake_pending = False
                        self._ready.clear()
                    return taken
                self._wake_pending = False
                self._ready.clear()
                if self._ended:
                    raise TransportError(
                        f"the Pub/Sub streaming pull ended: {self._error!r}; subscribe again "
                        "(unacknowledged messages come back after their ack deadline)"
                    )
            await self._ready.wait()

    def drain(self) -> list[Message]:
        with self._lock:
            taken = list(self._messages)
            self._messages.clear()
            return taken


def unused_callback(message: Message) -> None:
    """The callback the client requires; :class:`LoopScheduler` never calls it."""


def half_close(future: Any) -> bool:
    """Ask the server to end the streaming pull of ``future``; False if it cannot.

    google-cloud-pubsub ends a stream only by cancelling it. Google's emulator keeps a
    cancelled (or cut) stream registered on an ordered subscription and goes on
    assigning it a share of the ordering keys, which then reach no consumer until the
    subscription is recreated. Ending the request side first (a gRPC half-close) makes
    the server close the stream itself, after which the emulator forgets it. The client
    has no public way to do this: its request queue is reached through private
    attributes, and when they are not there (another client version) the stream is
    just cancelled, as before.
    """
    manager = getattr(future, "_StreamingPullFuture__manager", None)
    rpc = getattr(manager, "_rpc", None)
    requests = getattr(rpc, "_request_queue", None)
    if future.done() or not isinstance(requests, queue.Queue):
        return False
    requests.put(None)  # the client's request generator ends the stream on None
    return True


async def all_done(futures: Sequence[Any]) -> None:
    """Wait until every client future is done, waking the event loop once at the end."""
    if not futures:
        return
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    remaining = [len(futures)]
    lock = threading.Lock()

    def finish() -> None:
        if not done.done():
            done.set_result(None)

    def one_done(_: Any) -> None:
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if last:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(finish)

    for future in futures:
        future.add_done_callback(one_done)
    await done
