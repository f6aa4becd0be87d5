"""The job model: statuses, the moves allowed between them, and a job as clients see it."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from offload.core.holders import LeaseHolder, ParkedOn, holder_of

Lane = Literal["inline", "cpu", "gpu", "sagemaker"]
LANES: tuple[Lane, ...] = ("inline", "cpu", "gpu", "sagemaker")


class JobStatus(StrEnum):
    """Celery's status names, so Celery users read them without a glossary."""

    PENDING = "PENDING"
    STARTED = "STARTED"
    RETRY = "RETRY"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    REVOKED = "REVOKED"

    @property
    def terminal(self) -> bool:
        """True once nothing can move the job again."""
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCESS, JobStatus.FAILURE, JobStatus.REVOKED})

ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.STARTED, JobStatus.REVOKED}),
    JobStatus.STARTED: frozenset(
        {JobStatus.SUCCESS, JobStatus.RETRY, JobStatus.FAILURE, JobStatus.REVOKED}
    ),
    JobStatus.RETRY: frozenset({JobStatus.STARTED, JobStatus.FAILURE, JobStatus.REVOKED}),
    JobStatus.SUCCESS: frozenset(),
    JobStatus.FAILURE: frozenset(),
    JobStatus.REVOKED: frozenset(),
}


def can_move(source: JobStatus, target: JobStatus) -> bool:
    """Whether DESIGN.md allows `source -> target`."""
    return target in ALLOWED[source]


def sources_of(target: JobStatus) -> frozenset[JobStatus]:
    """Every status from which `target` may be reached (the store's write condition)."""
    return frozenset(s for s, targets in ALLOWED.items() if target in targets)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def isoformat(moment: datetime) -> str:
    """ISO 8601 UTC with microseconds and a `Z`: fixed width, so strings sort by time."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Progress(BaseModel):
    """What a running task last said about itself."""

    percent: float = Field(ge=0, le=100)
    message: str = ""


class JobError(BaseModel):
    """Why an attempt or a job failed."""

    type: str
    message: str


class PastRun(BaseModel):
    """How a run of a job ended before an operator replayed it."""

    attempts: int
    error: JobError | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    replayed_at: datetime


class Job(BaseModel):
    """A job as stored and as the API shows it."""

    job_id: str
    task: str
    lane: Lane
    status: JobStatus
    attempts: int = 0
    max_attempts: int = 1
    progress: Progress | None = None
    result: Any = None
    error: JobError | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime
    next_attempt_at: datetime | None = None
    # Cancellation was asked while the job ran; it stops at its next progress report or beat.
    cancel_requested: bool = False
    # Earlier runs of a job replayed from a dead-letter queue, oldest first.
    history: list[PastRun] = Field(default=[])  # copied per instance by pydantic
    # Internal: not part of the API view.
    caller: str = Field(default="local", exclude=True)
    # Who runs the current attempt, and until when that claim holds without a heartbeat.
    lease_owner: str | None = Field(default=None, exclude=True)
    lease_expires_at: datetime | None = Field(default=None, exclude=True)
    payload: Any = Field(default=None, exclude=True)
    idempotency_key: str | None = Field(default=None, exclude=True)
    request_hash: str | None = Field(default=None, exclude=True)
    # The API request that submitted the job: its log lines and the job's share this id.
    request_id: str | None = Field(default=None, exclude=True)
    # sagemaker lane: where the current attempt's input is, and where SageMaker will write
    # its output or its failure.
    input_location: str | None = Field(default=None, exclude=True)
    output_location: str | None = Field(default=None, exclude=True)
    failure_location: str | None = Field(default=None, exclude=True)
    # The job that submitted this one and waits for it to end (`JobContext.submit_job`).
    parent_id: str | None = Field(default=None, exclude=True)

    @property
    def holder(self) -> LeaseHolder | None:
        """Who holds the current attempt's lease (offload.core.holders)."""
        return holder_of(self.lease_owner)

    @property
    def parked_on(self) -> str | None:
        """The id of the job this one's attempt waits for; None when it is not parked."""
        holder = self.holder
        return holder.child_id if isinstance(holder, ParkedOn) else None

    def view(self) -> dict[str, Any]:
        """The JSON shape of DESIGN.md's contract."""
        return self.model_dump(mode="json")
