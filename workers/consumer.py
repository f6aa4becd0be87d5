"""A Celery consumer that dead-letters the messages it cannot run, with the reason.

Celery's own handlers log such a message and ack it (gone) or reject it (on SQS with a
redrive policy: received again and again until SQS moves it, reason unknown). Here it goes
straight to its lane's DLQ with the reason, and the worker carries on.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer

from offload.dlq import bury
from offload.settings import QueueLane, Settings, get_settings
from workers import warmup

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
        name = (getattr(message, "headers", None) or {}).get("task")
        if not self._bury(message, f"unknown task {name!r}"):
            super().on_unknown_task(body, message, exc)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        """A task message Celery cannot turn into a request."""
        if not self._bury(message, f"invalid task message: {exc}"):
            super().on_invalid_task(body, message, exc)

    def _bury(self, message: Any, reason: str) -> bool:
        """Move the message to its lane's DLQ and ack it; False when that is not possible."""
        settings = _settings_of(self.app)
        info = getattr(message, "delivery_info", None) or {}
        raw = (info.get("sqs_message") or {}).get("Body")
        lane = _lane_of(settings, info.get("sqs_queue"))
        if raw is None or lane is None:
            return False
        try:
            bury(settings, lane, raw, reason)
        except Exception:
            log.exception("could not dead-letter a message (%s); leaving it to SQS", reason)
            return False
        log.error("dead-lettered a message from the %s queue: %s", lane, reason)
        message.ack()
        return True


def _settings_of(app: Any) -> Settings:
    settings = getattr(app, "offload_settings", None)
    return settings if isinstance(settings, Settings) else get_settings()


def _lane_of(settings: Settings, queue_url: str | None) -> QueueLane | None:
    for lane in LANES:
        if queue_url == settings.queue_url(lane):
            return lane
    return None
