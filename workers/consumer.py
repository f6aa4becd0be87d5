"""A Celery consumer that dead-letters the messages it cannot run, with the reason.

Celery's own handlers log such a message and ack it (gone) or reject it (on SQS with a
redrive policy: received again and again until SQS moves it, reason unknown). Here its job,
when the message names one, ends FAILURE with the reason (`offload.runtime.unrunnable`); then the
message goes to its lane's DLQ with the same reason, and the worker carries on.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import socket
from typing import Any

from celery.worker.consumer import Consumer

from offload.aws.dlq import bury
from offload.aws.store import JobStore
from offload.runtime.unrunnable import fail_unrunnable, unrunnable_error
from offload.settings import QueueLane, Settings, get_settings
from workers import warmup
from workers.heartbeat import lease_owner

log = logging.getLogger(__name__)

LANES: tuple[QueueLane, ...] = ("cpu", "gpu")


class DeadLetteringConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer, with invalid and unknown messages sent to the DLQ; it takes
    messages only once the pool processes have warmed up (`workers.warmup`)."""

    def start(self) -> None:
        """Wait for the models, then consume."""
        settings = _settings_of(self.app)
        catalog = getattr(self.app, "offload_catalog", None)
        warmup.wait_until_warm(self.app, self.pool, catalog, settings.worker_warmup_timeout_s)
        super().start()

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        """The body could not be decoded (not JSON, wrong encoding)."""
        if not self._bury(message, f"not a readable message: {exc}"):
            super().on_decode_error(message, exc)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        """A readable message that is not a Celery task message."""
        if not self._bury(message, "not a Celery task message"):
            super().on_unknown_message(body, message)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        """A task message naming a task this worker does not have."""
        if not self._bury(message, "no worker of this lane has the task"):
            super().on_unknown_task(body, message, exc)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        """A task message Celery cannot turn into a request."""
        if not self._bury(message, f"invalid task message: {exc}"):
            super().on_invalid_task(body, message, exc)

    def _bury(self, message: Any, why: str) -> bool:
        """Fail the message's job, move the message to its lane's DLQ and ack it, all with
        the same reason. When AWS fails meanwhile the message is rejected, which on a queue
        with a redrive policy keeps it: the next delivery tries again (both steps may be
        repeated safely). False for a message not from an SQS queue of ours."""
        settings = _settings_of(self.app)
        info = getattr(message, "delivery_info", None) or {}
        raw = (info.get("sqs_message") or {}).get("Body")
        lane = _lane_of(settings, info.get("sqs_queue"))
        if raw is None or lane is None:
            return False
        job_id, task = _named_in(message, raw)
        error = unrunnable_error(task, lane, why)
        try:
            job = None
            if job_id is not None:
                owner = lease_owner(socket.gethostname(), os.getpid())
                job = fail_unrunnable(JobStore(settings), job_id, error, owner)
            if job is not None and (job.status.terminal or job.lease_owner) and job.error != error:
                # A copy of a job that another worker runs, or that ended otherwise: its
                # message is no dead letter.
                log.info("dropped a copy of job %s's message: %s (%s)", job_id, why, job.status)
            else:
                bury(settings, lane, raw, error.message, job_id=job_id, task=task, error=error)
                log.error("dead-lettered job %s's message: %s", job_id, error.message)
        except Exception as exc:
            # Celery's own handler would ack it: gone, and its job PENDING for good.
            log.warning("unrunnable message of job %s kept for later (%s)", job_id, exc)
            _keep(message)
            return True
        message.ack()
        return True


def _keep(message: Any) -> None:
    """Reject without requeue: kombu keeps the message on a queue with a redrive policy, and
    it comes back after its visibility timeout (SQS dead-letters it after maxReceiveCount)."""
    try:
        message.reject(requeue=False)
    except Exception:
        log.exception("could not reject a message; it comes back after its visibility timeout")


def _named_in(message: Any, raw: str) -> tuple[str | None, str | None]:
    """The job id and task a message names, from its headers or, when kombu could not
    read them, from the Celery envelope inside the raw SQS body."""
    headers = getattr(message, "headers", None)
    if not isinstance(headers, dict) or "id" not in headers:
        try:
            envelope = json.loads(base64.b64decode(raw, validate=True))
            headers = envelope.get("headers") if isinstance(envelope, dict) else None
        except (binascii.Error, ValueError):
            headers = None
    if not isinstance(headers, dict):
        return None, None
    job_id, task = headers.get("id"), headers.get("task")
    return (
        job_id if isinstance(job_id, str) and job_id else None,
        task if isinstance(task, str) and task else None,
    )


def _settings_of(app: Any) -> Settings:
    settings = getattr(app, "offload_settings", None)
    return settings if isinstance(settings, Settings) else get_settings()


def _lane_of(settings: Settings, queue_url: str | None) -> QueueLane | None:
    for lane in LANES:
        if queue_url == settings.queue_url(lane):
            return lane
    return None
