"""Publishing for the NATS transport: CloudEvents to messages, interest, acknowledgements.

A batch is encoded (and its subjects validated) before the transport takes its publish
lock. :class:`Publisher` then leaves out the subjects no consumer takes, sends the rest
in order without waiting, and awaits every JetStream acknowledgement of the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import nats.errors
from nats.js import JetStreamContext

from tidings.contracts.cloudevents import CloudEvent, encode_binary
from tidings.transports.base import NOTHING_UNROUTABLE, PublishNotConfirmedError, Unroutable
from tidings.transports.nats_options import NatsOptions, context_token, event_subject, matches

#: Header prefix of the CloudEvents NATS binding (binary mode).
HEADER_PREFIX = "ce-"
MSG_ID_HEADER = "Nats-Msg-Id"

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


def encode_batch(prefix: str, source: str, events: Sequence[CloudEvent]) -> list[Message]:
    """The messages of ``events`` of context ``source``; raises
    :class:`~tidings.errors.ConfigurationError` for a type that cannot be a subject."""
    token = context_token(source)
    subjects: dict[str, str] = {}  # a batch has few types: validate each once
    messages = []
    for event in events:
        subject = subjects.get(event.type)
        if subject is None:
            subject = subjects[event.type] = event_subject(prefix, token, event.type)
        messages.append((subject, *encode(event)))
    return messages


class Publisher:
    """Sends batches to the stream and awaits their acknowledgements; remembers which
    subjects some consumer takes."""

    def __init__(self, options: NatsOptions, where: str) -> None:
        self._options = options
        self._where = where
        # Subjects some consumer of the stream was seen filtering on: they are kept.
        self._taken: set[str] = set()

    async def send(self, js: JetStreamContext, messages: Sequence[Message]) -> Unroutable:
        """Publish ``messages`` in order; raises :class:`PublishNotConfirmedError` unless
        the stream acknowledged every one that was sent."""
        options = self._options
        acks: list[asyncio.Future[Any]] = []
        try:
            async with asyncio.timeout(options.confirm_timeout):
                # Checked before publishing, and what nobody takes is not sent: the
                # stream would drop it, and its Nats-Msg-Id would then make JetStream
                # drop the event sent again later as a duplicate (duplicate_window).
                untaken = await self._untaken(js, {subject for subject, *_ in messages})
                # Sent one after another (so in order) without waiting for acks.
                for subject, headers, body in messages:
                    if subject in untaken:
                        continue
                    acks.append(
                        await js.publish_async(
                            subject, body, headers=headers, stream=options.stream
                        )
                    )
                results = await asyncio.gather(*acks, return_exceptions=True)
        except TimeoutError:
            for ack in acks:
                ack.cancel()  # frees nats-py's pending-ack slots
            raise PublishNotConfirmedError(
                f"NATS at {self._where} did not acknowledge a batch of {len(messages)} "
                f"events within {options.confirm_timeout:g} s; retry the batch "
                "(Nats-Msg-Id makes the retry store each event once)"
            ) from None
        except BROKER_ERRORS as exc:
            for ack in acks:
                ack.cancel()
            raise PublishNotConfirmedError(
                f"publishing to NATS at {self._where} failed after {len(acks)} of "
                f"{len(messages)} events: {exc!r}; retry the whole batch"
            ) from exc
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures:
            raise PublishNotConfirmedError(
                f"NATS at {self._where} did not acknowledge {len(failures)} of "
                f"{len(messages)} events (first: {failures[0]!r}); retry the whole batch"
            ) from failures[0]
        if not untaken:
            return NOTHING_UNROUTABLE
        return frozenset(
            index for index, (subject, *_) in enumerate(messages) if subject in untaken
        )

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
