"""How the NATS transport reads JetStream's replies to a batch, without a server:
acknowledgements counted per batch, anything else a failure of the batch, and the
replies of a batch given up never counted for the next one."""

from __future__ import annotations

from typing import Any

import pytest
from nats.aio.msg import Msg

from tidings.transports.nats_publish import _AckInbox, _Batch

STREAM = "TIDINGS"


class _Client:
    """What _AckInbox asks of nats-py's client before it subscribes."""

    def new_inbox(self) -> str:
        return "_INBOX.test"


def reply(data: bytes, subject: str = "", headers: dict[str, str] | None = None) -> Msg:
    client: Any = None
    return Msg(client, subject=subject, data=data, headers=headers)


async def test_acknowledgements_complete_the_batch_once_every_message_has_one() -> None:
    batch = _Batch(2, STREAM)

    batch.receive(reply(b'{"stream":"TIDINGS","seq":1}'))
    assert not batch.done.done()
    batch.receive(reply(b'{"stream":"TIDINGS","seq":2,"duplicate":true}'))

    assert batch.done.done()
    assert batch.failures == []


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            reply(
                b'{"error":{"code":400,"err_code":10060,"description":"expected stream does '
                b'not match"}}'
            ),
            "expected stream does not match",
        ),
        (reply(b"", headers={"Status": "503"}), "status 503"),
        (reply(b'{"stream":"OTHER","seq":1}'), "acknowledged by stream 'OTHER'"),
        (reply(b'{"stream": "TIDINGS", "seq": 1, "error": "late"}'), "late"),
        (reply(b"not json"), "not a JetStream acknowledgement"),
        (reply(b"[1]"), "not a JetStream acknowledgement"),
    ],
)
async def test_a_reply_that_is_not_our_streams_acknowledgement_fails_the_batch(
    message: Msg, reason: str
) -> None:
    batch = _Batch(1, STREAM)

    batch.receive(message)

    assert batch.done.done()
    assert len(batch.failures) == 1
    assert reason in batch.failures[0]


async def test_a_spaced_acknowledgement_is_parsed_and_accepted() -> None:
    batch = _Batch(1, STREAM)

    batch.receive(reply(b'{ "stream": "TIDINGS", "seq": 7 }'))

    assert batch.failures == []


async def test_replies_of_a_batch_given_up_do_not_count_for_the_next() -> None:
    client: Any = _Client()
    inbox = _AckInbox(client)
    late, given_up = inbox.start(1, STREAM)
    inbox.forget(late)  # its confirm_timeout elapsed
    current, batch = inbox.start(1, STREAM)
    assert current != late

    await inbox._on_reply(reply(b'{"stream":"TIDINGS","seq":1}', subject=late))
    assert not batch.done.done()
    await inbox._on_reply(reply(b'{"stream":"TIDINGS","seq":2}', subject=current))

    assert batch.done.done()
    assert not given_up.done.done()
