"""Ending a Pub/Sub streaming pull cleanly (a half-close) where the client allows it, and
falling back to the client's own cancel where it does not."""

from __future__ import annotations

import queue
from concurrent.futures import Future
from types import SimpleNamespace

import grpc
from google.cloud import pubsub_v1
from google.pubsub_v1.services.subscriber.transports.grpc import SubscriberGrpcTransport

from tidings.transports.pubsub_stream import half_close, unused_callback


def test_a_live_stream_of_the_installed_client_is_half_closed() -> None:
    # Nothing listens on port 9: the stream only retries, which is all this test needs.
    channel = grpc.insecure_channel("127.0.0.1:9")
    subscriber = pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))
    future = subscriber.subscribe("projects/p/subscriptions/s", callback=unused_callback)
    try:
        # The client version tidings is tested with keeps the attributes half_close uses.
        assert half_close(future)
    finally:
        future.cancel()
        subscriber.close()


def test_a_future_without_the_client_internals_is_left_to_cancel() -> None:
    assert not half_close(Future())


def test_a_stream_that_already_ended_is_not_touched() -> None:
    requests: queue.Queue[object] = queue.Queue()
    ended: Future[None] = Future()
    ended.set_result(None)
    manager = SimpleNamespace(_rpc=SimpleNamespace(_request_queue=requests))
    ended._StreamingPullFuture__manager = manager  # type: ignore[attr-defined]

    assert not half_close(ended)
    assert requests.empty()
