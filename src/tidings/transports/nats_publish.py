"""Publishing for the NATS transport: CloudEvents to messages, interest, acknowledgements.

A batch is encoded (and its subjects validated) before the transport takes its publish
lock. :class:`Publisher` then leaves out the subjects no consumer takes, sends the rest
in order without waiting, and awaits every JetStream acknowledgement of the batch.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import Header

from tidings.contracts.cloud_event import CloudEvent
from tidings.contracts.cloudevents import encode_binary
from tidings.contracts.envelope import partition_slot
from tidings.transports.base import NOTHING_UNROUTABLE, PublishNotConfirmedError, Unroutable
from tidings.transports.nats_options import (
    NatsOptions,
    context_token,
    event_subject,
    matches,
    sharded_subject,
)

#: Header prefix of the CloudEvents NATS binding (binary mode).
HEADER_PREFIX = "ce-"
MSG_ID_HEADER = Header.MSG_ID.value
# JetStream refuses the message unless this stream stores it (as publish_async's stream=).
_EXPECTED_STREAM = Header.EXPECTED_STREAM.value
# Where nats-py puts a reply's status line (a reply that is not an acknowledgement).
_STATUS, _DESCRIPTION = Header.STATUS.value, Header.DESCRIPTION.value

#: What nats-py and the socket raise when the server is unreachable or refuses.
BROKER_ERRORS: tuple[type[BaseException], ...] = (OSError, TimeoutError, nats.errors.Error)

_CONSUMERS_PER_PAGE = 256

#: One message to send: subject, headers, body.
Message = tuple[str, dict[str, str], bytes]


def encode(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """The event in CloudEvents binary mode, its id as ``Nats-Msg-Id`` for JetStream dedup."""
    headers, body = encode_binary(event, prefix=HEADER_PREFIX)
    headers[MSG_ID_HEADER] = event.id
    return headers, body


def encode_batch(
    prefix: str, source: str, events: Sequence[CloudEvent], shards: int = 1
) -> list[Message]:
    """The messages of ``events`` of context ``source``; raises
    :class:`~tidings.errors.ConfigurationError` for a type that cannot be a subject.

    With ``shards`` > 1 the subject names the event's shard, the slot of its partition
    key (``CloudEvent.subject``, else its id) modulo ``shards``.
    """
    token = context_token(source)
    subjects: dict[str, str] = {}  # a batch has few types: validate each once
    messages = []
    for event in events:
        subject = subjects.get(event.type)
        if subject is None:
            subject = subjects[event.type] = event_subject(prefix, token, event.type)
        if shards > 1:
            key = event.subject if event.subject is not None else event.id
            shard = partition_slot(key) % shards
            subject = sharded_subject(prefix, token, shard, event.type)
        messages.append((subject, *encode(event)))
    return messages


class _Batch:
    """The acknowledgements of one batch: counted as they arrive, complete when every
    message sent has its reply."""

    __slots__ = ("_acknowledged", "done", "expected", "failures", "received", "stream")

    def __init__(self, expected: int, stream: str) -> None:
        self.expected = expected
        self.stream = stream
        self.received = 0
        self.failures: list[str] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # How the server's acknowledgement begins ({"stream":"NAME","seq":...}).
        self._acknowledged = b'{"stream":' + json.dumps(stream).encode() + b","

    def receive(self, msg: Msg) -> None:
        data = msg.data
        # The usual reply is recognised without parsing it; anything else is parsed.
        if not data.startswith(self._acknowledged) or b'"error"' in data:
            problem = _refusal(msg, self.stream)
            if problem is not None:
                self.failures.append(problem)
        self.received += 1
        if self.received >= self.expected and not self.done.done():
            self.done.set_result(None)


class _AckInbox:
    """One connection's subscription to the replies of its batches.

    Each batch gets a reply subject of its own under the inbox, so a late reply to a
    batch given up (after a timeout) can never count for the next one.
    """

    def __init__(self, client: NatsClient) -> None:
        self.client = client
        self._prefix = client.new_inbox()
        self._batches: dict[str, _Batch] = {}
        self._count = 0
        self._subscribed = False

    async def open(self) -> None:
        if not self._subscribed:
            await self.client.subscribe(f"{self._prefix}.*", cb=self._on_reply)
            self._subscribed = True

    def start(self, expected: int, stream: str) -> tuple[str, _Batch]:
        """A new batch expecting ``expected`` replies, and the subject they go to."""
        self._count += 1
        reply = f"{self._prefix}.{self._count}"
        batch = self._batches[reply] = _Batch(expected, stream)
        return reply, batch

    def forget(self, reply: str) -> None:
        self._batches.pop(reply, None)

    async def _on_reply(self, msg: Msg) -> None:
        batch = self._batches.get(msg.subject)
        if batch is not None:  # else the reply of a batch already given up
            batch.receive(msg)


def _refusal(msg: Msg, stream: str) -> str | None:
    """Why the reply ``msg`` is not a JetStream acknowledgement from ``stream``, or None."""
    status = (msg.headers or {}).get(_STATUS)
    if status is not None:  # 503: no stream captures the subject any longer
        return f"status {status} {(msg.headers or {}).get(_DESCRIPTION, '')}".rstrip()
    try:
        reply = json.loads(msg.data)
    except ValueError:
        return f"not a JetStream acknowledgement: {msg.data[:200]!r}"
    if not isinstance(reply, dict):
        return f"not a JetStream acknowledgement: {msg.data[:200]!r}"
    if "error" in reply:
        error = reply["error"]
        return str(error.get("description", error) if isinstance(error, dict) else error)
    if reply.get("stream") != stream:
        return f"acknowledged by stream {reply.get('stream')!r}, not {stream!r}"
    return None


class Publisher:
    """Sends batches to the stream and awaits their acknowledgements; remembers which
    subjects some consumer takes.

    Messages go out with nats-py's core ``Client.publish``, each with the reply subject
    of its batch and the ``Nats-Expected-Stream`` header: the same message JetStream's
    ``publish_async`` sends, without its per-message work (a future with a done
    callback, a reply token from ``os.urandom``, a semaphore slot under
    ``asyncio.wait_for``); the replies of a batch are counted instead.
    """

    def __init__(self, options: NatsOptions, where: str) -> None:
        self._options = options
        self._where = where
        # Subjects some consumer of the stream was seen filtering on: they are kept.
        self._taken: set[str] = set()
        self._inbox: _AckInbox | None = None

    async def send(
        self, client: NatsClient, js: JetStreamContext, messages: Sequence[Message]
    ) -> Unroutable:
        """Publish ``messages`` in order; raises :class:`PublishNotConfirmedError` unless
        the stream acknowledged every one that was sent."""
        options = self._options
        stream = options.stream
        inbox = self._inbox
        if inbox is None or inbox.client is not client:
            inbox = self._inbox = _AckInbox(client)  # a new connection: a new inbox
        reply = ""
        sent = 0
        try:
            async with asyncio.timeout(options.confirm_timeout):
                await inbox.open()
                # Checked before publishing, and what nobody takes is not sent: the
                # stream would drop it, and its Nats-Msg-Id would then make JetStream
                # drop the event sent again later as a duplicate (duplicate_window).
                untaken = await self._untaken(js, {subject for subject, *_ in messages})
                expected = sum(subject not in untaken for subject, *_ in messages)
                reply, batch = inbox.start(expected, stream)
                # Sent one after another (so in order) without waiting for replies.
                for subject, headers, body in messages:
                    if subject in untaken:
                        continue
                    headers[_EXPECTED_STREAM] = stream
                    await client.publish(subject, body, reply=reply, headers=headers)
                    sent += 1
                if expected:
                    await batch.done
        except TimeoutError:
            raise PublishNotConfirmedError(
                f"NATS at {self._where} did not acknowledge a batch of {len(messages)} "
                f"events within {options.confirm_timeout:g} s; retry the batch "
                "(Nats-Msg-Id makes the retry store each event once)"
            ) from None
        except BROKER_ERRORS as exc:
            raise PublishNotConfirmedError(
                f"publishing to NATS at {self._where} failed after {sent} of "
                f"{len(messages)} events: {exc!r}; retry the whole batch"
            ) from exc
        finally:
            inbox.forget(reply)
        if batch.failures:
            raise PublishNotConfirmedError(
                f"NATS at {self._where} did not acknowledge {len(batch.failures)} of "
                f"{expected} events (first: {batch.failures[0]}); retry the whole batch"
            )
        if not untaken:
            return NOTHING_UNROUTABLE
        return frozenset(
            index for index, (subject, *_) in enumerate(messages) if subject in untaken
        )

    def forget_interest(self) -> None:
        """Ask the server again which subjects are taken: after a refused batch the
        stream may have been deleted with its consumers, and one created again in its
        place would drop, as nobody's interest, what was taken before."""
        self._taken.clear()

    async def _untaken(self, js: JetStreamContext, subjects: set[str]) -> set[str]:
        """Which of ``subjects`` no consumer of the stream filters on (interest is kept)."""
        unknown = subjects - self._taken
        if not unknown:
            return unknown
        filters: list[str] = []
        infos: list[Any] = []
        while True:  # the server lists 256 consumers per page
            page = await js.consumers_info(self._options.stream, len(infos))
            infos += page
            if len(page) < _CONSUMERS_PER_PAGE:
                break
        for info in infos:
            config = info.config
            filters.extend(config.filter_subjects or [])
            if config.filter_subject:
                filters.append(config.filter_subject)
            elif not config.filter_subjects:
                filters.append(">")  # unfiltered: takes every subject of the stream
        taken = {subject for subject in unknown if any(matches(f, subject) for f in filters)}
        self._taken |= taken
        return unknown - taken
