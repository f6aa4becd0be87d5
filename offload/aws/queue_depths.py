"""How much work waits in each queue lane: `GET /queues`, the dashboard and `offload review`.

Depths are SQS's approximate counts. The age of the oldest waiting job comes from the job
store, not from CloudWatch's `ApproximateAgeOfOldestMessage`: that metric arrives a minute
late, costs a CloudWatch call per lane, and does not exist on the local stack.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from offload.aws import clients
from offload.aws.store import JobStore
from offload.core.model import JobStatus, utcnow
from offload.settings import QueueLane, Settings


class LaneDepth(BaseModel):
    """One queue lane's backlog."""

    lane: QueueLane
    visible: int = Field(description="messages waiting for a worker")
    in_flight: int = Field(description="messages received by workers, not yet deleted")
    delayed: int = Field(description="retries and waits not yet due")
    dead_letters: int = Field(description="messages in the lane's dead-letter queue")
    oldest_waiting_s: float | None = Field(
        description="age of the oldest job not yet started (PENDING), in seconds; null if none"
    )


def lane_depth(settings: Settings, store: JobStore, lane: QueueLane) -> LaneDepth:
    """The lane's depths now. `AwsUnavailable` when SQS or DynamoDB cannot say."""
    sqs = clients.sqs(settings)
    with clients.unavailable_as("SQS"):
        queue = sqs.get_queue_attributes(
            QueueUrl=settings.queue_url(lane),
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        dead = sqs.get_queue_attributes(
            QueueUrl=settings.dlq_url(lane), AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
    return LaneDepth(
        lane=lane,
        visible=int(queue.get("ApproximateNumberOfMessages", 0)),
        in_flight=int(queue.get("ApproximateNumberOfMessagesNotVisible", 0)),
        delayed=int(queue.get("ApproximateNumberOfMessagesDelayed", 0)),
        dead_letters=int(dead.get("ApproximateNumberOfMessages", 0)),
        oldest_waiting_s=_oldest_waiting_s(store, lane, utcnow()),
    )


def _oldest_waiting_s(store: JobStore, lane: QueueLane, now: datetime) -> float | None:
    # A PENDING job is unchanged since it was created: the oldest by change is the oldest.
    (oldest,) = store.in_flight(lane, now, limit=1, status=JobStatus.PENDING) or (None,)
    return None if oldest is None else round((now - oldest.created_at).total_seconds(), 1)
