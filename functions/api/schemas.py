"""Request and response bodies of the API (DESIGN.md, Contracts)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from offload.job import Job, JobError, JobStatus, Lane, PastRun, Progress


class SubmitJob(BaseModel):
    """`POST /jobs`."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, max_length=128, description="a task name from GET /tasks")
    payload: dict[str, Any] = Field(default_factory=dict, description="the task's payload")
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="the same key from the same caller returns the existing job",
    )


class JobView(BaseModel):
    """A job as clients see it."""

    job_id: str
    task: str
    lane: Lane
    status: JobStatus
    attempts: int
    max_attempts: int
    progress: Progress | None
    result: Any
    error: JobError | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    next_attempt_at: datetime | None
    cancel_requested: bool
    history: list[PastRun]

    @classmethod
    def of(cls, job: Job) -> JobView:
        """The view of a stored job."""
        return cls.model_validate(job.model_dump())


class JobPage(BaseModel):
    """`GET /jobs`: newest first; pass `next_cursor` as `cursor` for the next page."""

    jobs: list[JobView]
    next_cursor: str | None


class TaskView(BaseModel):
    """A catalog entry."""

    name: str
    lane: Lane
    description: str
    payload_schema: dict[str, Any]
    max_attempts: int
    timeout_s: float
    backoff_s: float
    backoff_max_s: float


class TaskList(BaseModel):
    """`GET /tasks`."""

    tasks: list[TaskView]


class Health(BaseModel):
    """`GET /healthz`."""

    status: str = "ok"
