# mypy: disable-error-code="no-untyped-call"
"""The worker's SQS channel never lets a failed SQS call out into Celery's event loop: a
failed receive is noted and polled again after a capped backoff; a failed ack is left to SQS.

(The e2e fault-injection test runs real workers through refused, dropped and slowed SQS.)
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from kombu import asynchronous as kombu_async
from kombu.asynchronous.aws.connection import AsyncHTTPResponse
from kombu.asynchronous.http.base import Headers, Request, Response
from kombu.connection import Connection

from workers import sqs_transport
from workers.sqs_transport import ReceiveFailed, TolerantSQSConnection

QUEUE_URL = "http://127.0.0.1:9/123456789012/cpu"


class Hub:
    """Records what the channel schedules instead of running an event loop."""

    def __init__(self) -> None:
        self.later: list[tuple[float, Any, tuple[Any, ...]]] = []
        self.soon: list[tuple[Any, tuple[Any, ...]]] = []

    def call_later(self, delay: float, fun: Any, *args: Any) -> None:
        self.later.append((delay, fun, args))

    def call_soon(self, fun: Any, *args: Any) -> None:
        self.soon.append((fun, args))


@pytest.fixture
def channel() -> Any:
    loop = kombu_async.Hub()  # the async HTTP client binds to kombu's current event loop
    kombu_async.set_event_loop(loop)
    connection = Connection(
        "sqs://testing:testing@127.0.0.1:9",
        transport="workers.sqs_transport:Transport",
        transport_options={
            "predefined_queues": {"cpu": {"url": QUEUE_URL}},
            "region": "us-east-1",
            "is_secure": False,
            "client-config": sqs_transport.client_config(1),
        },
    )
    chan = connection.channel()
    chan.hub = Hub()
    chan._active_queues.append("cpu")
    yield chan
    connection.release()
    kombu_async.set_event_loop(None)
    loop.close()


def answer(code: int, body: bytes = b"", error: Any = None) -> Any:
    response = Response(
        Request("http://127.0.0.1:9/"), code=code, headers=Headers(), buffer=BytesIO(body)
    )
    response.error = error
    return AsyncHTTPResponse(response)


@pytest.mark.parametrize(
    ("code", "body"),
    [(503, b""), (599, b""), (400, b"<ErrorResponse/>")],
    ids=["refused", "dropped", "throttled"],
)
def test_a_failed_receive_answer_becomes_a_failure_not_an_exception(
    channel: Any, code: int, body: bytes
) -> None:
    connection = channel.asynsqs(queue="cpu")
    assert isinstance(connection, TolerantSQSConnection)
    parsed = connection._on_list_ready(None, [], "ReceiveMessage", answer(code, body))
    assert isinstance(parsed, ReceiveFailed)


def test_an_answer_cut_short_reads_as_no_messages(channel: Any) -> None:
    # botocore's parser is lenient: the messages it lost come back after their visibility.
    connection = channel.asynsqs(queue="cpu")
    parsed = connection._on_list_ready(None, [], "ReceiveMessage", answer(200, b"<ReceiveMes"))
    assert "Messages" not in parsed


def test_failed_receives_back_off_up_to_the_cap_and_recover(channel: Any) -> None:
    polled: list[int] = []
    for _ in range(8):
        channel._on_receive_answer(QUEUE_URL, "cpu", polled.append, ReceiveFailed("HTTP 503"))
        channel._loop1("cpu", polled[-1])
    assert polled == [0] * 8
    delays = [delay for delay, fun, args in channel.hub.later]
    assert len(delays) == 8 and all(0 <= d <= sqs_transport.RECEIVE_BACKOFF_CAP_S for d in delays)
    assert all(args == ("cpu",) for _, _, args in channel.hub.later)
    channel._on_receive_answer(QUEUE_URL, "cpu", polled.append, {"Messages": []})
    assert channel._receive_failures == {}
    channel.hub.later.clear()
    channel._loop1("cpu", 0)  # back to kombu's own pace: the polling interval
    assert [delay for delay, _, _ in channel.hub.later] == [channel.connection.polling_interval]


def test_a_receive_that_cannot_even_be_sent_is_retried_later(
    channel: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError("no sockets left")

    monkeypatch.setattr(channel, "_get_bulk_async", refuse)
    channel._schedule_queue("cpu")
    assert channel._receive_failures == {"cpu": 1}
    assert len(channel.hub.later) == 1


def test_an_ack_sqs_never_answered_is_left_to_sqs(
    channel: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Unreachable:
        def delete_message(self, **_: Any) -> None:
            raise EndpointConnectionError(endpoint_url=QUEUE_URL)

    monkeypatch.setattr(channel, "sqs", lambda queue=None: Unreachable())
    message = channel.Message(
        {"body": "", "properties": {"delivery_tag": "t1"}, "headers": {}},
        channel=channel,
    )
    message.delivery_info.update(
        sqs_message={"ReceiptHandle": "r1"}, sqs_queue=QUEUE_URL, routing_key="cpu"
    )
    channel.qos.append(message, "t1")
    channel.basic_ack("t1")  # logged, not raised: Celery would end the worker
    assert "t1" in channel.qos._dirty  # released: its prefetch slot is free again


def test_a_long_poll_never_races_the_request_timeout(channel: Any) -> None:
    connection = channel.asynsqs(queue="cpu").get_http_connection()
    assert connection.timeout == sqs_transport.REQUEST_TIMEOUT_S > 20 + 10  # SQS's longest poll
