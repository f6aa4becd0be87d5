"""Dead letters: what failed for good, kept in each queue lane's DLQ with the reason, and
replayed from there by an operator.

Workers send a copy of a job's message to its lane's DLQ when the job fails for good, and
the messages they cannot run at all (not a Celery message, an unknown task) with the
reason; SQS's redrive policy adds messages received too often. Replay puts a failed job
back to PENDING, keeping its earlier run in `history`, and sends it again.
"""

from __future__ import annotations

import binascii
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from offload.aws import celery_protocol, clients, transitions
from offload.aws.queues import QueuePublisher
from offload.aws.store import JobStore
from offload.core.catalog import Catalog
from offload.core.model import JobError, JobStatus, isoformat, utcnow
from offload.errors import JobNotFound, JobStateConflict, UnknownTask
from offload.settings import QueueLane, Settings

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef, MessageTypeDef

log = logging.getLogger(__name__)

# Receives of one listing: SQS returns at most 10 messages a call, sampled from its hosts.
_MAX_PEEKS = 20
# How long replay hides a dead letter while it re-sends it.
_REPLAY_HOLD_S = 30
# The reason of a dead letter without ours: SQS's redrive moved it (maxReceiveCount).
REDRIVEN = "redriven by SQS after too many receives"


class DeadLetter(BaseModel):
    """A message in a dead-letter queue, with what is known of its job."""

    message_id: str
    job_id: str | None
    task: str | None
    reason: str
    error: JobError | None
    dead_at: str | None
    receive_count: int
    # The attempt the message was to run, when it is a job's message.
    attempt: int | None = None


@dataclass
class ReplayReport:
    """What a replay did with each dead letter it looked at."""

    replayed: list[str] = field(default_factory=list)  # job ids (or message ids) sent again
    skipped: dict[str, str] = field(default_factory=dict)  # id -> why not


def bury(
    settings: Settings,
    lane: QueueLane,
    body: str,
    reason: str,
    *,
    job_id: str | None = None,
    task: str | None = None,
    error: JobError | None = None,
    client: SQSClient | None = None,
) -> None:
    """Put a message into `lane`'s dead-letter queue with why it is there."""
    attributes: dict[str, MessageAttributeValueTypeDef] = {
        "reason": _text(reason),
        "dead_at": _text(isoformat(utcnow())),
    }
    if job_id:
        attributes["job_id"] = _text(job_id)
    if task:
        attributes["task"] = _text(task)
    if error is not None:
        attributes["error"] = _text(error.model_dump_json())
    with clients.unavailable_as("SQS"):
        (client or clients.sqs(settings)).send_message(
            QueueUrl=settings.dlq_url(lane), MessageBody=body, MessageAttributes=attributes
        )


class DeadLetters:
    """Reading and replaying the dead letters of the queue lanes.

    :param store: the job store (replay reopens jobs there).
    :param publisher: sends replayed jobs to their lane.
    :param catalog: the tasks, to re-send a job with its current declaration.
    """

    def __init__(self, store: JobStore, publisher: QueuePublisher, catalog: Catalog) -> None:
        self.store = store
        self.settings = store.settings
        self.publisher = publisher
        self.catalog = catalog

    @property
    def client(self) -> SQSClient:
        """The SQS client."""
        return self.publisher.client

    def count(self, lane: QueueLane) -> int:
        """SQS's approximate number of messages in the lane's DLQ."""
        with clients.unavailable_as("SQS"):
            attrs = self.client.get_queue_attributes(
                QueueUrl=self.settings.dlq_url(lane), AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]
        return int(attrs.get("ApproximateNumberOfMessages", 0))

    def peek(self, lane: QueueLane, limit: int = 100) -> list[DeadLetter]:
        """Up to `limit` dead letters, without taking them off the queue."""
        seen: dict[str, DeadLetter] = {}
        for _ in range(_MAX_PEEKS):
            # Visibility 0: a look, not a receipt; other readers still see every message.
            batch = self._receive(lane, visibility_s=0)
            fresh = [m for m in batch if m["MessageId"] not in seen]
            for message in fresh:
                seen[message["MessageId"]] = _describe(message)
            if not fresh or len(seen) >= limit:
                break
        letters = sorted(seen.values(), key=lambda letter: letter.dead_at or "")
        return letters[:limit]

    def replay(self, lane: QueueLane, job_ids: set[str] | None = None) -> ReplayReport:
        """Send dead letters back to work: all of them, or those of `job_ids`."""
        report = ReplayReport()
        handled: set[str] = set()
        for _ in range(_MAX_PEEKS * 5):
            fresh = 0
            for message in self._receive(lane, visibility_s=_REPLAY_HOLD_S):
                if message["MessageId"] in handled:
                    self._release(lane, message)  # left in place earlier: keep it visible
                    continue
                fresh += 1
                handled.add(message["MessageId"])
                self._replay_one(lane, message, job_ids, report)
            if not fresh:
                break
        if job_ids:
            for job_id in job_ids - set(report.replayed) - set(report.skipped):
                report.skipped[job_id] = "not in the dead-letter queue"
        return report

    def _replay_one(
        self,
        lane: QueueLane,
        message: MessageTypeDef,
        job_ids: set[str] | None,
        report: ReplayReport,
    ) -> None:
        letter = _describe(message)
        if job_ids is not None and letter.job_id not in job_ids:
            self._release(lane, message)  # someone else's dead letter: leave it visible
            return
        key = letter.job_id or letter.message_id
        try:
            if letter.job_id is None:
                # Not a job of ours (unreadable, or an unknown task): send it as it came.
                self.publisher.send_raw(lane, message["Body"])
            else:
                self._resend_job(letter.job_id)
        except (JobNotFound, JobStateConflict, UnknownTask) as exc:
            report.skipped[key] = str(exc)
            if isinstance(exc, JobStateConflict) and exc.current and exc.current.status.terminal:
                self._delete(lane, message)  # the job ended after all: this copy is stale
            else:
                self._release(lane, message)
            return
        self._delete(lane, message)
        report.replayed.append(key)

    def _resend_job(self, job_id: str) -> None:
        job = self.store.get(job_id)
        spec = self.catalog.get(job.task)
        if job.status is not JobStatus.FAILURE:
            raise JobStateConflict(job_id, "be replayed", job)  # no write to learn it
        # FAILURE -> PENDING, the failed run kept in `history` (transitions.reopen).
        reopened = self.store.apply(transitions.reopen(job))
        self.publisher.send(spec, reopened.job_id, reopened.payload)

    def _receive(self, lane: QueueLane, visibility_s: int) -> list[MessageTypeDef]:
        with clients.unavailable_as("SQS"):
            out = self.client.receive_message(
                QueueUrl=self.settings.dlq_url(lane),
                MaxNumberOfMessages=10,
                VisibilityTimeout=visibility_s,
                WaitTimeSeconds=0,
                MessageAttributeNames=["All"],
                AttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            )
        return out.get("Messages", [])

    def _delete(self, lane: QueueLane, message: MessageTypeDef) -> None:
        with clients.unavailable_as("SQS"):
            self.client.delete_message(
                QueueUrl=self.settings.dlq_url(lane), ReceiptHandle=message["ReceiptHandle"]
            )

    def _release(self, lane: QueueLane, message: MessageTypeDef) -> None:
        with clients.unavailable_as("SQS"):
            self.client.change_message_visibility(
                QueueUrl=self.settings.dlq_url(lane),
                ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=0,
            )


def _describe(message: MessageTypeDef) -> DeadLetter:
    attrs = {
        name: value.get("StringValue", "")
        for name, value in message.get("MessageAttributes", {}).items()
    }
    job_id, task, attempt = _job_of(message["Body"])
    job_id, task = attrs.get("job_id", job_id), attrs.get("task", task)
    error = None
    if "error" in attrs:
        try:
            error = JobError.model_validate_json(attrs["error"])
        except ValueError:
            error = None
    dead_at = attrs.get("dead_at")
    if dead_at is None and "SentTimestamp" in message.get("Attributes", {}):
        sent = int(message["Attributes"]["SentTimestamp"]) / 1000
        dead_at = isoformat(datetime.fromtimestamp(sent).astimezone())
    return DeadLetter(
        message_id=message["MessageId"],
        job_id=job_id,
        task=task,
        # Without our attribute, SQS's redrive moved it: received maxReceiveCount times.
        reason=attrs.get("reason", REDRIVEN),
        error=error,
        dead_at=dead_at,
        receive_count=int(message.get("Attributes", {}).get("ApproximateReceiveCount", 0)),
        attempt=attempt,
    )


def _job_of(body: str) -> tuple[str | None, str | None, int | None]:
    """The job id, task and attempt of a Celery message body, if it is one."""
    try:
        decoded = celery_protocol.decode(body)
    except (ValueError, KeyError, TypeError, IndexError, binascii.Error):
        return None, None, None
    attempt = decoded["kwargs"].get("attempt") if isinstance(decoded["kwargs"], dict) else None
    return (
        str(decoded["id"]),
        str(decoded["task"]),
        attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else None,
    )


def _text(value: str) -> MessageAttributeValueTypeDef:
    return {"DataType": "String", "StringValue": value[:1000] or "-"}


def as_dict(report: ReplayReport) -> dict[str, Any]:
    """The JSON shape of a replay report."""
    return {"replayed": report.replayed, "skipped": report.skipped}
