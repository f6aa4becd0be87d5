"""kombu's SQS transport, made to live through a flaky network: no failed SQS call ends the
worker, each one is logged once with its operation, and receives back off (capped, jittered).

kombu 5.7 ends the whole worker on one failed receive: its async client turns a 5xx, a
timeout or a dropped connection into `[]` and `_on_messages_ready` calls `.get` on it
(AttributeError, "Unrecoverable error"); any other error answer (a 4xx such as a throttle)
raises out of the HTTP client's callback into the event loop, with the same end. Either way
that queue's polling chain is broken too. Here every receive ends in `_loop1`, which polls
again after a backoff while the receives keep failing.

Acks (DeleteMessage) and rejects go through kombu's boto3 client, which retries them itself
(`client_config`); what still fails after that is logged and left to SQS: the message comes
back after its visibility timeout, and the job's conditional writes make that copy harmless.

Celery uses this transport through `broker_transport` (workers/app.py).
"""

# kombu's channel and connection methods carry no annotations.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from kombu.asynchronous.aws.connection import AsyncHTTPSConnection
from kombu.asynchronous.aws.sqs.connection import AsyncSQSConnection
from kombu.transport import SQS
from vine import ensure_promise, promise

from offload.core.backoff import retry_delay

log = logging.getLogger(__name__)

# A queue whose receives keep failing is polled again after at most this long.
RECEIVE_BACKOFF_BASE_S = 1.0
RECEIVE_BACKOFF_CAP_S = 30.0
# What botocore may fail with short of a bug: an error answer, or no (usable) answer at all.
AWS_FAILURES = (ClientError, BotoCoreError, OSError)


def client_config(wait_time_s: int) -> dict[str, Any]:
    """botocore settings for kombu's blocking SQS client (acks, rejects, synchronous polls):
    retried with capped, jittered backoff (botocore's standard mode: 5xx, throttles,
    timeouts and dropped connections), and a read timeout longer than a long poll."""
    return {
        "retries": {"mode": "standard", "total_max_attempts": 5},
        "connect_timeout": 5,
        "read_timeout": wait_time_s + 10,
    }


@dataclass(frozen=True)
class ReceiveFailed:
    """A ReceiveMessage that got no usable answer: an error status, or none at all."""

    reason: str


# kombu's async requests time out after 20 s, as long as SQS's longest poll: a poll of
# WaitTimeSeconds=20 would race its own timeout. Long enough for any poll and a slow answer.
REQUEST_TIMEOUT_S = 35.0


class TolerantSQSConnection(AsyncSQSConnection):
    """kombu's async SQS connection, whose list answers never raise: an error becomes a
    `ReceiveFailed` for the channel to handle."""

    def get_http_connection(self) -> AsyncHTTPSConnection:
        """An HTTP connection whose timeout outlasts the longest poll."""
        return AsyncHTTPSConnection(http_client=self._httpclient, timeout=REQUEST_TIMEOUT_S)

    def _on_list_ready(self, parent: Any, markers: Any, operation: str, response: Any) -> Any:
        if response.status != self.STATUS_CODE_OK:
            return ReceiveFailed(_describe(response))
        try:
            return super()._on_list_ready(parent, markers, operation, response)
        except Exception as exc:  # an answer botocore cannot parse (cut short, garbled)
            return ReceiveFailed(f"unreadable answer: {type(exc).__name__}")


class Channel(SQS.Channel):
    """kombu's SQS channel, with failed receives, acks and rejects survived."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Receives failed in a row, by queue name: how long the next poll waits.
        self._receive_failures: dict[str, int] = {}
        super().__init__(*args, **kwargs)

    def asynsqs(self, queue: str | None = None) -> Any:
        """kombu's async connection for `queue`, with answers that never raise."""
        connection = super().asynsqs(queue=queue)
        if type(connection) is AsyncSQSConnection:
            # kombu builds the connection itself; the subclass only adds a method, so the
            # object is the same one with a parser that returns failures instead of raising.
            connection.__class__ = TolerantSQSConnection
        return connection

    def _schedule_queue(self, queue: str) -> None:
        try:
            super()._schedule_queue(queue)
        except Exception as exc:  # the request could not even be made (signing, sockets)
            self._receive_failed(queue, f"{type(exc).__name__}: {exc}")
            self._loop1(queue)

    def _get_async(self, queue: str, count: int = 1, callback: Any = None) -> Any:
        q_url = self._new_queue(queue)
        qname = self.canonical_queue_name(queue)
        then = ensure_promise(callback)
        return self._get_from_sqs(
            queue_name=qname,
            queue_url=q_url,
            count=count,
            connection=self.asynsqs(queue=qname),
            callback=promise(self._on_receive_answer, (q_url, queue, then)),
        )

    def _on_receive_answer(self, q_url: str, queue: str, then: Any, answer: Any) -> None:
        """Deliver what a receive brought, or note its failure; then always poll on."""
        fetched = 0
        if isinstance(answer, ReceiveFailed):
            self._receive_failed(queue, answer.reason)
        elif not isinstance(answer, dict):
            self._receive_failed(queue, f"unexpected answer {type(answer).__name__}")
        else:
            self._receive_worked(queue)
            try:
                fetched = self._on_messages_ready(q_url, queue, answer)
            except Exception:
                # The messages not handed over come back after their visibility timeout.
                log.exception("SQS messages from %s could not all be delivered", queue)
        then(fetched)

    def _loop1(self, queue: str, messages_fetched: int | None = None) -> None:
        failures = self._receive_failures.get(queue, 0)
        if failures:
            delay = retry_delay(failures, RECEIVE_BACKOFF_BASE_S, RECEIVE_BACKOFF_CAP_S)
            self.hub.call_later(delay, self._schedule_queue, queue)  # type: ignore[union-attr]
            return
        super()._loop1(queue, messages_fetched)

    def _receive_failed(self, queue: str, reason: str) -> None:
        failures = self._receive_failures[queue] = self._receive_failures.get(queue, 0) + 1
        log.warning(
            "SQS ReceiveMessage on %s failed (%s); polling again after a backoff (%d in a row)",
            queue,
            reason,
            failures,
        )

    def _receive_worked(self, queue: str) -> None:
        failures = self._receive_failures.pop(queue, 0)
        if failures:
            log.info("SQS ReceiveMessage on %s works again after %d failures", queue, failures)

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        """Delete the message; when SQS cannot be reached even after retries, leave it."""
        try:
            super().basic_ack(delivery_tag, multiple=multiple)
        except AWS_FAILURES as exc:
            # kombu has released the delivery; the message returns after its visibility
            # timeout, and its job, ended by then, drops that copy.
            log.warning(
                "SQS DeleteMessage failed after retries (%s); SQS will redeliver", _said(exc)
            )

    def _delete_rejected_message(self, delivery_tag: Any) -> None:
        try:
            super()._delete_rejected_message(delivery_tag)
        except AWS_FAILURES as exc:
            log.warning(
                "SQS DeleteMessage of a rejected message failed (%s); it returns", _said(exc)
            )

    def _has_redrive_policy(self, queue: str | None, queue_url: str) -> bool:
        try:
            return bool(super()._has_redrive_policy(queue, queue_url))
        except AWS_FAILURES as exc:
            # Not known: keep the rejected message, as kombu does when the read is refused.
            log.warning("SQS GetQueueAttributes on %s failed (%s)", queue_url, _said(exc))
            return True


class Transport(SQS.Transport):
    """kombu's SQS transport with `Channel`."""

    Channel = Channel


def _describe(response: Any) -> str:
    reason = getattr(response, "reason", "") or ""
    return f"HTTP {response.status}" + (f" {reason}" if reason else "")


def _said(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
