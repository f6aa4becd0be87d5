"""Sending jobs to the cpu/gpu SQS queues as Celery messages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from offload.aws import celery_protocol, clients
from offload.core.catalog import TaskSpec
from offload.settings import QueueLane, Settings

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

# The lanes with a queue (and a dead-letter queue) each.
QUEUE_LANES: tuple[QueueLane, ...] = ("cpu", "gpu")
# SQS's ceiling on DelaySeconds.
MAX_DELAY_S = 900


class QueuePublisher:
    """Publishes one message per job attempt to the queue of the task's lane.

    :param settings: names the queues.
    :param client: an SQS client; the process's cached one by default.
    """

    def __init__(self, settings: Settings, client: SQSClient | None = None) -> None:
        self.settings = settings
        self._client = client

    @property
    def client(self) -> SQSClient:
        """The SQS client, made on first use."""
        if self._client is None:
            self._client = clients.sqs(self.settings)
        return self._client

    def send(
        self, spec: TaskSpec, job_id: str, payload: Any, *, attempt: int = 1, delay_s: float = 0
    ) -> None:
        """Send attempt `attempt` of a job, visible to workers after `delay_s` (at most 15 min)."""
        lane = queue_lane(spec)
        body = celery_protocol.encode(
            task=spec.name,
            task_id=job_id,
            kwargs={"payload": payload, "attempt": attempt},
            routing_key=lane,
            time_limit=(spec.timeout_s + self.settings.hard_limit_grace_s, spec.timeout_s),
        )
        with clients.unavailable_as("SQS"):
            self.client.send_message(
                QueueUrl=self.settings.queue_url(lane),
                MessageBody=body,
                DelaySeconds=max(0, min(MAX_DELAY_S, round(delay_s))),
            )

    def send_raw(self, lane: QueueLane, body: str) -> None:
        """Send a message body as it is (a replayed dead letter that is not a job of ours)."""
        with clients.unavailable_as("SQS"):
            self.client.send_message(QueueUrl=self.settings.queue_url(lane), MessageBody=body)


# Where an inline job goes when its API process cannot run it in time (or is full): cpu
# workers run inline tasks too.
SPILL_LANE: QueueLane = "cpu"


def queue_lane(spec: TaskSpec) -> QueueLane:
    """The queue of a task's jobs: its own lane's, or for an inline task the spill lane's."""
    if spec.lane == "cpu" or spec.lane == "gpu":
        return spec.lane
    if spec.lane == "inline":
        return SPILL_LANE
    raise ValueError(f"task {spec.name} runs on lane {spec.lane!r}, which has no queue")
